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
    /// Nothing to build, and why (journaled with the delivery).
    Skip(String),
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
    fn decide(&self, delivery: &Delivery) -> Decision;
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
        if let Some(c) = &self.credentials
            && !c.starts_with("vault:")
        {
            return Err(format!(
                "source.credentials: {c:?} must be vault:NAME (a credential set with `capstan secrets set NAME`)"
            ));
        }
        Ok(())
    }

    fn decide(&self, delivery: &Delivery) -> Decision {
        let Change::Push(push) = &delivery.change else {
            return Decision::Skip(format!("a {} event builds nothing", delivery.event));
        };
        if push.branch.is_empty() {
            return Decision::Skip("a tag push builds nothing".into());
        }
        if push.branch != self.branch {
            return Decision::Skip(format!("a push to {}, not to {}", push.branch, self.branch));
        }
        if push.commit.is_empty() {
            return Decision::Skip(format!("the branch {} was deleted", push.branch));
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
        Decision::Build {
            branch: push.branch.clone(),
            commit: push.commit.clone(),
            author: push.author.clone(),
            message: push.message.clone(),
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
        }
    }

    #[test]
    fn a_push_is_built_on_its_branch_when_it_touches_a_watched_path() {
        let s = source(&["web", "Dockerfile", "*.toml"]);
        assert!(matches!(
            s.decide(&push("main", Some(&["web/a/b.html"]))),
            Decision::Build { .. }
        ));
        assert!(matches!(
            s.decide(&push("main", Some(&["Dockerfile"]))),
            Decision::Build { .. }
        ));
        assert!(matches!(
            s.decide(&push("main", None)),
            Decision::Build { .. }
        ));
        let Decision::Skip(why) = s.decide(&push("main", Some(&["docs/x.md"]))) else {
            panic!()
        };
        assert!(why.contains("none of the watched paths"), "{why}");
        let Decision::Skip(why) = s.decide(&push("dev", Some(&["web/x"]))) else {
            panic!()
        };
        assert_eq!(why, "a push to dev, not to main");
        assert!(matches!(
            source(&[]).decide(&push("main", Some(&["x"]))),
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
