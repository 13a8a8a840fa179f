//! What a verified delivery says: a push (branch, commit, author, message, the paths it
//! touched) or a pull/merge request (its branch, head commit, and whether it comes from a
//! fork), in each provider's documented format. Foreign payloads are read leniently: unknown
//! fields are ignored, and a missing optional one is empty.

use serde_json::Value;

use crate::Provider;

/// A delivery, once its signature held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The provider's id of this delivery (a redelivery keeps it); empty when it sent none.
    pub id: String,
    pub provider: Provider,
    /// The provider's event name (`push`, `Push Hook`, `pull_request`, …).
    pub event: String,
    pub change: Change,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Push(Push),
    PullRequest(PullRequest),
    /// A ping or an event the pipeline has no use for (answered, journaled as skipped).
    Other,
}

/// A push to a branch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Push {
    /// The branch (`refs/heads/` taken off); empty for a tag.
    pub branch: String,
    /// The commit the branch now points at; empty when the branch was deleted.
    pub commit: String,
    /// The commit before, when the provider says (all zeros for a new branch).
    pub before: String,
    pub author: String,
    /// The head commit's message.
    pub message: String,
    /// Every path the pushed commits added, changed or removed; `None` when the payload cannot
    /// say (a provider that leaves them out, or more commits than it lists).
    pub paths: Option<Vec<String>>,
}

/// A pull (merge) request opened or moved on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PullRequest {
    pub number: u64,
    /// `opened`, `synchronize`, `reopened`, `closed` (GitLab's `open`, `update`, `reopen`,
    /// `close`, `merge` are said the same way).
    pub action: String,
    /// The branch with the changes.
    pub branch: String,
    /// The branch it would be merged into.
    pub base: String,
    pub commit: String,
    pub author: String,
    pub message: String,
    /// Whether the changes come from another repository (a fork).
    pub fork: bool,
}

/// Reads a verified delivery: `header` gives its headers by lowercase name.
///
/// # Errors
/// The body is not JSON, or a push or pull request lacks what every one has (its ref or
/// commit); the message names the field.
pub fn read(
    provider: Provider,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
) -> Result<Delivery, String> {
    let (event_header, id_headers): (&str, &[&str]) = match provider {
        Provider::Github => ("x-github-event", &["x-github-delivery"]),
        Provider::Gitea => ("x-gitea-event", &["x-gitea-delivery"]),
        Provider::Forgejo => ("x-forgejo-event", &["x-forgejo-delivery"]),
        Provider::GitlabToken | Provider::GitlabSigned => (
            "x-gitlab-event",
            &[
                "webhook-id",
                "idempotency-key",
                "x-gitlab-webhook-uuid",
                "x-gitlab-event-uuid",
            ],
        ),
        Provider::Generic => ("x-capstan-event", &["x-capstan-delivery"]),
    };
    let event = header(event_header).unwrap_or_else(|| "push".into());
    let id = id_headers
        .iter()
        .find_map(|h| header(h))
        .unwrap_or_default()
        .trim()
        .chars()
        .take(200)
        .collect();
    let doc: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let change = match (provider, event.as_str()) {
        (Provider::GitlabToken | Provider::GitlabSigned, "Push Hook") => {
            Change::Push(push(&doc, Dialect::Gitlab)?)
        }
        (Provider::GitlabToken | Provider::GitlabSigned, "Merge Request Hook") => {
            Change::PullRequest(merge_request(&doc)?)
        }
        (Provider::GitlabToken | Provider::GitlabSigned, _) => Change::Other,
        (_, "push") => Change::Push(push(&doc, Dialect::Github)?),
        (_, "pull_request") => Change::PullRequest(pull_request(&doc)?),
        _ => Change::Other,
    };
    Ok(Delivery {
        id,
        provider,
        event,
        change,
    })
}

#[derive(Clone, Copy)]
enum Dialect {
    /// GitHub's, which Gitea, Forgejo and the generic form share.
    Github,
    Gitlab,
}

/// How many commits a provider lists at most; a push with more cannot say every path.
const LISTED_COMMITS: usize = 20;

fn push(doc: &Value, dialect: Dialect) -> Result<Push, String> {
    let reference = str_at(doc, "/ref");
    if reference.is_empty() {
        return Err("a push without `ref`".into());
    }
    let branch = reference
        .strip_prefix("refs/heads/")
        .unwrap_or_default()
        .to_owned();
    let after = str_at(doc, "/after");
    let commit = match dialect {
        Dialect::Gitlab => str_at(doc, "/checkout_sha"),
        Dialect::Github => after.clone(),
    };
    let deleted = commit.is_empty() || commit.chars().all(|c| c == '0');
    let commits = doc["commits"].as_array().cloned().unwrap_or_default();
    let head = match dialect {
        Dialect::Github if doc["head_commit"].is_object() => doc["head_commit"].clone(),
        _ => commits
            .iter()
            .find(|c| str_at(c, "/id") == commit)
            .or(commits.last())
            .cloned()
            .unwrap_or(Value::Null),
    };
    let total = match dialect {
        Dialect::Gitlab => doc["total_commits_count"]
            .as_u64()
            .map_or(commits.len(), |n| n as usize),
        Dialect::Github => commits.len(),
    };
    // a push with no commit listed (a tag, a force-push to an older commit) cannot say
    let listed = !commits.is_empty()
        && total <= LISTED_COMMITS
        && commits.iter().all(|c| {
            ["added", "modified", "removed"]
                .iter()
                .any(|k| c[k].is_array())
        });
    let paths = listed.then(|| {
        let mut paths: Vec<String> = commits
            .iter()
            .flat_map(|c| ["added", "modified", "removed"].map(|k| c[k].clone()))
            .filter_map(|v| v.as_array().cloned())
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_owned))
            .collect();
        paths.sort();
        paths.dedup();
        paths
    });
    let author = ["/author/name", "/author/username", "/committer/name"]
        .iter()
        .map(|p| str_at(&head, p))
        .find(|s| !s.is_empty())
        .or_else(|| {
            [
                "/pusher/name",
                "/pusher/login",
                "/user_name",
                "/sender/login",
            ]
            .iter()
            .map(|p| str_at(doc, p))
            .find(|s| !s.is_empty())
        })
        .unwrap_or_default();
    Ok(Push {
        branch,
        commit: if deleted { String::new() } else { commit },
        before: str_at(doc, "/before"),
        author,
        message: str_at(&head, "/message"),
        paths,
    })
}

/// GitHub's `pull_request` event (Gitea's and Forgejo's have its shape).
fn pull_request(doc: &Value) -> Result<PullRequest, String> {
    let pr = &doc["pull_request"];
    let commit = str_at(pr, "/head/sha");
    if commit.is_empty() {
        return Err("a pull_request without `pull_request.head.sha`".into());
    }
    let head_repo = str_at(pr, "/head/repo/full_name");
    let base_repo = str_at(pr, "/base/repo/full_name");
    Ok(PullRequest {
        number: doc["number"]
            .as_u64()
            .or_else(|| pr["number"].as_u64())
            .unwrap_or_default(),
        action: str_at(doc, "/action"),
        branch: str_at(pr, "/head/ref"),
        base: str_at(pr, "/base/ref"),
        commit,
        author: str_at(pr, "/user/login"),
        message: str_at(pr, "/title"),
        // a head repository deleted since is a fork's too
        fork: head_repo.is_empty() || head_repo != base_repo,
    })
}

/// GitLab's `Merge Request Hook`.
fn merge_request(doc: &Value) -> Result<PullRequest, String> {
    let mr = &doc["object_attributes"];
    let commit = str_at(mr, "/last_commit/id");
    if commit.is_empty() {
        return Err("a merge request without `object_attributes.last_commit.id`".into());
    }
    let action = match str_at(mr, "/action").as_str() {
        "open" => "opened".to_owned(),
        "update" => "synchronize".to_owned(),
        "reopen" => "reopened".to_owned(),
        "close" | "merge" => "closed".to_owned(),
        other => other.to_owned(),
    };
    Ok(PullRequest {
        number: mr["iid"].as_u64().unwrap_or_default(),
        action,
        branch: str_at(mr, "/source_branch"),
        base: str_at(mr, "/target_branch"),
        commit,
        author: str_at(doc, "/user/username"),
        message: str_at(mr, "/title"),
        fork: mr["source_project_id"] != mr["target_project_id"],
    })
}

fn str_at(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests;
