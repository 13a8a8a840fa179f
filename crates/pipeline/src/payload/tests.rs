use super::*;

fn header(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR")
            .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
    )
    .join("fixtures")
    .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_github_push_says_its_branch_commit_author_and_paths() {
    let h = header(&[("x-github-event", "push"), ("x-github-delivery", "d-1")]);
    let d = read(Provider::Github, &h, &fixture("github-push.json")).unwrap();
    assert_eq!(d.id, "d-1");
    let Change::Push(p) = d.change else {
        panic!("{d:?}")
    };
    assert_eq!(p.branch, "main");
    assert_eq!(p.commit, "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c");
    assert_eq!(p.author, "Mona Octocat");
    assert_eq!(p.message, "Serve the new front page");
    assert_eq!(
        p.paths.as_deref(),
        Some(&["Dockerfile".to_owned(), "web/index.html".to_owned()][..])
    );
}

#[test]
fn a_gitea_push_reads_as_githubs() {
    let h = header(&[("x-gitea-event", "push"), ("x-gitea-delivery", "g-7")]);
    let d = read(Provider::Gitea, &h, &fixture("gitea-push.json")).unwrap();
    let Change::Push(p) = d.change else {
        panic!("{d:?}")
    };
    assert_eq!((d.id.as_str(), p.branch.as_str()), ("g-7", "develop"));
    assert_eq!(p.commit, "bffeb74224043ba2feb48d137756c8a9331c449a");
    assert_eq!(p.author, "Jo Dev");
    assert_eq!(p.paths.as_deref(), Some(&["api/price.go".to_owned()][..]));
}

#[test]
fn a_gitlab_push_takes_its_checkout_commit_and_every_commits_paths() {
    let h = header(&[
        ("x-gitlab-event", "Push Hook"),
        ("x-gitlab-event-uuid", "u-1"),
    ]);
    let d = read(Provider::GitlabToken, &h, &fixture("gitlab-push.json")).unwrap();
    assert_eq!(d.id, "u-1");
    let Change::Push(p) = d.change else {
        panic!("{d:?}")
    };
    assert_eq!(p.commit, "da1560886d4f094c3e6c9ef40349f7d38b5d27d7");
    assert_eq!(p.author, "GitLab dev user");
    assert_eq!(p.message, "Fix the README\n");
    assert_eq!(
        p.paths.unwrap(),
        ["README.md", "catalogue/new.json", "old.txt"]
    );
}

#[test]
fn pull_and_merge_requests_say_their_branch_and_whether_from_a_fork() {
    let h = header(&[("x-github-event", "pull_request")]);
    let d = read(Provider::Github, &h, &fixture("github-pull-request.json")).unwrap();
    let Change::PullRequest(pr) = d.change else {
        panic!("{d:?}")
    };
    assert_eq!((pr.number, pr.branch.as_str()), (2, "dark"));
    assert!(pr.fork, "stranger/shop into octo-org/shop");
    let h = header(&[("x-gitlab-event", "Merge Request Hook")]);
    let d = read(
        Provider::GitlabSigned,
        &h,
        &fixture("gitlab-merge-request.json"),
    )
    .unwrap();
    let Change::PullRequest(mr) = d.change else {
        panic!("{d:?}")
    };
    assert_eq!(mr.action, "opened");
    assert_eq!(mr.branch, "ms-viewport");
    assert!(!mr.fork, "the same project");
}

#[test]
fn what_a_push_cannot_say_is_none_and_bad_bodies_name_the_field() {
    // more commits than the provider lists: the paths are not all there
    let mut doc: Value = serde_json::from_slice(&fixture("gitlab-push.json")).unwrap();
    doc["total_commits_count"] = 40.into();
    let h = header(&[("x-gitlab-event", "Push Hook")]);
    let d = read(Provider::GitlabToken, &h, doc.to_string().as_bytes()).unwrap();
    let Change::Push(p) = d.change else {
        panic!("{d:?}")
    };
    assert_eq!(p.paths, None);
    // a deleted branch has no commit to build
    let body = br#"{"ref":"refs/heads/x","after":"0000000000000000000000000000000000000000","deleted":true}"#;
    let d = read(Provider::Github, &header(&[]), body).unwrap();
    let Change::Push(p) = d.change else {
        panic!("{d:?}")
    };
    assert!(p.commit.is_empty());
    // a ping is nothing to build
    let d = read(
        Provider::Github,
        &header(&[("x-github-event", "ping")]),
        b"{}",
    )
    .unwrap();
    assert_eq!(d.change, Change::Other);
    let e = read(Provider::Github, &header(&[]), b"not json").unwrap_err();
    assert!(e.contains("not JSON"), "{e}");
    let e = read(Provider::Github, &header(&[]), b"{}").unwrap_err();
    assert!(e.contains("`ref`"), "{e}");
}
