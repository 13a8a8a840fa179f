//! What registries send when something is pushed: the distribution registry's notification
//! envelope (`{"events": [{"action": "push", "target": {"repository", "tag", "digest"}}]}`)
//! and Docker Hub's webhook (`{"push_data": {"tag"}, "repository": {"repo_name"}}`).

use serde::Deserialize;

#[derive(Deserialize)]
struct Envelope {
    events: Vec<DistributionEvent>,
}

#[derive(Deserialize)]
struct DistributionEvent {
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: Option<Target>,
}

#[derive(Deserialize)]
struct Target {
    #[serde(default)]
    repository: String,
}

#[derive(Deserialize)]
struct DockerHub {
    /// Present in every Docker Hub webhook: what tells it from other JSON (its content is
    /// not needed).
    #[serde(rename = "push_data")]
    _push_data: serde::de::IgnoredAny,
    repository: HubRepository,
}

#[derive(Deserialize)]
struct HubRepository {
    repo_name: String,
}

/// The repositories a notification says were pushed to (`shop/api`; Docker Hub's one-word
/// names as `library/...`), each once.
///
/// # Errors
/// A body that is neither payload, said so.
pub fn pushed_repositories(body: &[u8]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = if let Ok(e) = serde_json::from_slice::<Envelope>(body) {
        e.events
            .into_iter()
            .filter(|e| e.action == "push")
            .filter_map(|e| e.target.map(|t| t.repository))
            .filter(|r| !r.is_empty())
            .collect()
    } else if let Ok(h) = serde_json::from_slice::<DockerHub>(body) {
        let name = h.repository.repo_name;
        vec![if name.contains('/') {
            name
        } else {
            format!("library/{name}")
        }]
    } else {
        return Err(
            "the body is neither a registry notification envelope ({\"events\": [...]}) nor a Docker Hub webhook ({\"push_data\", \"repository\"})".into(),
        );
    };
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_payloads_name_their_repositories() {
        let envelope = br#"{"events":[
            {"id":"1","action":"pull","target":{"repository":"shop/web","tag":"1"}},
            {"id":"2","action":"push","target":{"mediaType":"application/vnd.oci.image.manifest.v1+json","repository":"shop/api","tag":"v1.0.0","digest":"sha256:ab"}},
            {"id":"3","action":"push","target":{"repository":"shop/api","digest":"sha256:cd"}}]}"#;
        assert_eq!(pushed_repositories(envelope).unwrap(), ["shop/api"]);
        let hub = br#"{"callback_url":"https://registry.hub.docker.com/u/acme/api/hook/x/","push_data":{"pushed_at":1,"pusher":"acme","tag":"1.4"},"repository":{"repo_name":"acme/api","name":"api","namespace":"acme"}}"#;
        assert_eq!(pushed_repositories(hub).unwrap(), ["acme/api"]);
        let official = br#"{"push_data":{"tag":"1"},"repository":{"repo_name":"nginx"}}"#;
        assert_eq!(pushed_repositories(official).unwrap(), ["library/nginx"]);
        let e = pushed_repositories(b"{\"hello\":1}").unwrap_err();
        assert!(e.contains("neither"), "{e}");
    }
}
