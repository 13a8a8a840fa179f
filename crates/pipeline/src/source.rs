//! An app's git source (`x-capstan.source` in its Compose file, or set through the API), and
//! whether a delivery asks it for a build.

use globset::{Glob, GlobSet, GlobSetBuilder};

use crate::{Change, Delivery};

/// Where an app's code is, and what to build from it.
pub type Source = capstan_model::GitSource;

/// What a delivery asks of a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Build this commit.
    Build {
        branch: String,
        commit: String,
        author: String,
        message: String,
    },
    /// Build this commit of another branch and deploy it as the preview app `app`.
    Preview {
        app: String,
        branch: String,
        commit: String,
        author: String,
        message: String,
    },
    /// The preview `app`'s branch is gone (or its pull request closed): remove it.
    RemovePreview { app: String },
    /// Nothing to build, and why (journaled with the delivery).
    Skip(String),
}

/// The preview app of `app` for `branch`: `<app>-<branch>`, the branch lowercased, what is not
/// a letter or digit made `-`, cut to fit an app's name.
pub fn preview_app(app: &str, branch: &str) -> String {
    let slug: String = branch
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{app}-{}", slug.trim_matches('-'));
    name.truncate(63);
    name.trim_end_matches('-').to_owned()
}

/// What the pipeline does with a source.
pub trait SourceExt {
    /// Checks what the settings say on their own.
    ///
    /// # Errors
    /// The first problem, naming the key.
    fn check(&self) -> Result<(), String>;

    /// What `delivery` asks: a push to the source's branch that touches a watched path is
    /// built; anything else is skipped, with the reason. Pull requests are for previews,
    /// decided by their caller.
    fn decide(&self, app: &str, delivery: &Delivery) -> Decision;
}

impl SourceExt for Source {
    fn check(&self) -> Result<(), String> {
        if self.repository.trim().is_empty() {
            return Err("source.repository: say where the code is".into());
        }
        if self.repository.starts_with('-') || self.branch.starts_with('-') {
            return Err("source: a repository or branch cannot start with `-`".into());
        }
        if self.branch.trim().is_empty() || self.branch.contains("..") {
            return Err(format!("source.branch: {:?} is not a branch", self.branch));
        }
        watched(self).map(|_| ())?;
        if let Some(p) = &self.previews {
            match capstan_model::parse_duration(&p.ttl) {
                Ok(d) if d >= std::time::Duration::from_secs(1) => {}
                Ok(_) => return Err("source.previews.ttl: at least 1s".into()),
                Err(e) => return Err(format!("source.previews.ttl: {e}")),
            }
        }
        if let Some(c) = &self.credentials
            && !c.starts_with("vault:")
        {
            return Err(format!(
                "source.credentials: {c:?} must be vault:NAME (a credential set with `capstan secrets set NAME`)"
            ));
        }
        Ok(())
    }

    fn decide(&self, app: &str, delivery: &Delivery) -> Decision {
        let previews = self.previews.as_ref();
        let push = match &delivery.change {
            Change::Push(p) => p,
            Change::PullRequest(pr) => {
                let Some(previews) = previews else {
                    return Decision::Skip(
                        "a pull request builds nothing: previews are off".into(),
                    );
                };
                if pr.fork && !previews.forks {
                    return Decision::Skip(format!(
                        "pull request {} comes from a fork: previews from forks are off (previews.forks)",
                        pr.number
                    ));
                }
                let preview = preview_app(app, &pr.branch);
                return match pr.action.as_str() {
                    "opened" | "synchronize" | "reopened" => Decision::Preview {
                        app: preview,
                        branch: pr.branch.clone(),
                        commit: pr.commit.clone(),
                        author: pr.author.clone(),
                        message: pr.message.clone(),
                    },
                    "closed" => Decision::RemovePreview { app: preview },
                    other => Decision::Skip(format!("a pull request {other} builds nothing")),
                };
            }
            Change::Other => {
                return Decision::Skip(format!("a {} event builds nothing", delivery.event));
            }
        };
        if push.branch.is_empty() {
            return Decision::Skip("a tag push builds nothing".into());
        }
        let own = push.branch == self.branch;
        if !own && previews.is_none() {
            return Decision::Skip(format!("a push to {}, not to {}", push.branch, self.branch));
        }
        if push.commit.is_empty() {
            return if own {
                Decision::Skip(format!("the branch {} was deleted", push.branch))
            } else {
                Decision::RemovePreview {
                    app: preview_app(app, &push.branch),
                }
            };
        }
        match (watched(self), &push.paths) {
            (Ok(Some(set)), Some(paths)) if !paths.iter().any(|p| set.is_match(p)) => {
                return Decision::Skip(format!(
                    "the push touches none of the watched paths ({})",
                    self.paths.join(", ")
                ));
            }
            // a push that cannot say what it touched is built
            _ => {}
        }
        if own {
            Decision::Build {
                branch: push.branch.clone(),
                commit: push.commit.clone(),
                author: push.author.clone(),
                message: push.message.clone(),
            }
        } else {
            Decision::Preview {
                app: preview_app(app, &push.branch),
                branch: push.branch.clone(),
                commit: push.commit.clone(),
                author: push.author.clone(),
                message: push.message.clone(),
            }
        }
    }
}

/// The watched paths as one matcher; `None` watches everything.
fn watched(source: &Source) -> Result<Option<GlobSet>, String> {
    if source.paths.is_empty() {
        return Ok(None);
    }
    let mut set = GlobSetBuilder::new();
    for p in &source.paths {
        let p = p.trim_start_matches("./");
        set.add(Glob::new(p).map_err(|e| format!("source.paths: {p:?}: {e}"))?);
        // a directory watches what is under it
        if !p.contains(['*', '?', '[']) {
            let dir = format!("{}/**", p.trim_end_matches('/'));
            set.add(Glob::new(&dir).map_err(|e| format!("source.paths: {p:?}: {e}"))?);
        }
    }
    set.build()
        .map(Some)
        .map_err(|e| format!("source.paths: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Provider, Push};

    fn push(branch: &str, paths: Option<&[&str]>) -> Delivery {
        Delivery {
            id: "1".into(),
            provider: Provider::Github,
            event: "push".into(),
            change: Change::Push(Push {
                branch: branch.into(),
                commit: "abc".into(),
                paths: paths.map(|p| p.iter().map(|s| (*s).to_owned()).collect()),
                ..Push::default()
            }),
        }
    }

    fn source(paths: &[&str]) -> Source {
        Source {
            repository: "http://127.0.0.1/shop.git".into(),
            branch: "main".into(),
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
            credentials: None,
            service: None,
            context: None,
            dockerfile: None,
            fail_on: None,
            previews: None,
        }
    }

    #[test]
    fn a_push_is_built_on_its_branch_when_it_touches_a_watched_path() {
        let s = source(&["web", "Dockerfile", "*.toml"]);
        assert!(matches!(
            s.decide("shop", &push("main", Some(&["web/a/b.html"]))),
            Decision::Build { .. }
        ));
        assert!(matches!(
            s.decide("shop", &push("main", Some(&["Dockerfile"]))),
            Decision::Build { .. }
        ));
        assert!(matches!(
            s.decide("shop", &push("main", None)),
            Decision::Build { .. }
        ));
        let Decision::Skip(why) = s.decide("shop", &push("main", Some(&["docs/x.md"]))) else {
            panic!()
        };
        assert!(why.contains("none of the watched paths"), "{why}");
        let Decision::Skip(why) = s.decide("shop", &push("dev", Some(&["web/x"]))) else {
            panic!()
        };
        assert_eq!(why, "a push to dev, not to main");
        assert!(matches!(
            source(&[]).decide("shop", &push("main", Some(&["x"]))),
            Decision::Build { .. }
        ));
    }

    #[test]
    fn bad_settings_name_their_key() {
        let mut s = source(&["web/[x"]);
        assert!(s.check().unwrap_err().contains("source.paths"));
        s = source(&[]);
        s.credentials = Some("hunter2".into());
        assert!(s.check().unwrap_err().contains("vault:NAME"));
        s = source(&[]);
        s.repository = "--upload-pack=evil".into();
        assert!(s.check().is_err());
        let e = serde_json::from_str::<Source>(r#"{"repository":"x","brnch":"main"}"#).unwrap_err();
        assert!(e.to_string().contains("brnch"), "{e}");
    }
}
