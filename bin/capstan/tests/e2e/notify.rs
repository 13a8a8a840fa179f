//! Notifications of image updates through the daemon: a JSON webhook and a Slack-compatible one
//! (local receivers of the test's own: Slack cannot run here, so its receiver checks the
//! documented incoming-webhook payload, a JSON object with a `text` string) and email through a
//! real SMTP server (Debian's `python3-aiosmtpd`, with authentication). One message per check
//! cycle, one line per new candidate, never the same candidate twice; a failed delivery is
//! retried, across a restart too.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use axum::http::StatusCode;
use capstan_model::NotifyChannels;
use capstan_testkit::{
    Alertmanager, Daemon, Received, Registry, RegistryOptions, Smtp, eventually, receiver,
    serve_refused, unique,
};

use crate::bin;

async fn check_now(daemon: &Daemon) {
    let (code, _, err) = daemon
        .cli(&["images", "updates", "--check-now", "-o", "json"])
        .await;
    assert_eq!(code, 0, "{err}");
}

fn events(r: &Received) -> Vec<(String, String)> {
    r.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["attributes"]["reference"].as_str().unwrap().to_owned(),
                e["attributes"]["tag"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn updates_are_notified_once_per_candidate_in_one_message_per_cycle() {
    let engine = capstan_testkit::engine().await;
    let registry = Registry::start(RegistryOptions::default()).await;
    let (a, b) = (unique("capt-ntf-a"), unique("capt-ntf-b"));
    registry.push(&a, "v1.0.0", "a1").await;
    registry.push(&b, "v1.0.0", "b1").await;
    let (ref_a, ref_b) = (
        format!("{}/{a}:v1.0.0", registry.host()),
        format!("{}/{b}:v1.0.0", registry.host()),
    );
    let (hook_url, hook) = receiver().await;
    let (slack_url, slack) = receiver().await;
    // the first webhook try fails (503, come back in 1 s): the same message is sent again
    hook.refuse
        .lock()
        .unwrap()
        .push((StatusCode::SERVICE_UNAVAILABLE, Some("1")));
    let smtp = Smtp::start("capstan", "mail-s3cret").await;
    let alertmanager = Alertmanager::start().await;
    let secrets = tempfile::tempdir().unwrap();
    let secret = |name: &str, text: &str| {
        let path = secrets.path().join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path.display().to_string()
    };
    let slack_file = secret("slack-url", &format!("{slack_url}\n"));
    let config = format!(
        r#"[logs]
collect = false
[images]
first_check_after = "1h"
containers = ["{none}"]
refs = ["{ref_a} minor", "{ref_b} minor"]

[[notify]]
name = "hook"
type = "webhook"
url = "{hook_url}"
token = "hook-t0ken"

[[notify]]
name = "chat"
type = "slack"
url_file = "{slack_file}"

[[notify]]
name = "mail"
type = "email"
smtp = "{smtp}"
from = "capstan <capstan@test.invalid>"
to = ["ops@test.invalid", "oncall@test.invalid"]
user = "capstan"
password_file = "vault:smtp"

[[notify]]
name = "am"
type = "alertmanager"
url = "{am}"
"#,
        none = unique("no-such-container"),
        smtp = smtp.url(),
        am = alertmanager.url(),
    );
    // the SMTP password is kept sealed in the vault, as an installer would keep it
    let mut daemon = Daemon::start_prepared(bin(), engine.host(), &config, |data| {
        capstan_testkit::keep_credential(bin(), data, "smtp", "mail-s3cret");
        assert!(data.join("credentials/smtp.sealed").exists());
    })
    .await;

    // a cycle with two new candidates: one message on each channel, naming both
    registry.push(&a, "v1.1.0", "a2").await;
    registry.push(&b, "v1.2.0", "b2").await;
    check_now(&daemon).await;
    eventually(
        Duration::from_secs(30),
        "the first notifications",
        || async {
            (hook.accepted().len() == 1
                && slack.accepted().len() == 1
                && smtp.messages().len() == 1)
                .then_some(())
        },
    )
    .await;
    assert_eq!(hook.tries(), 2, "one 503, then the same message again");
    let first = &hook.accepted()[0];
    assert_eq!(
        first.headers["authorization"].to_str().unwrap(),
        "Bearer hook-t0ken"
    );
    assert_eq!(
        first.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    assert_eq!(first.body["source"], "capstan");
    let mut got = events(first);
    got.sort();
    let mut want = vec![
        (ref_a.clone(), "v1.1.0".to_owned()),
        (ref_b.clone(), "v1.2.0".to_owned()),
    ];
    want.sort();
    assert_eq!(got, want);
    let subject = first.body["subject"].as_str().unwrap();
    assert!(
        subject.starts_with("2 image updates available on "),
        "{subject}"
    );
    // Slack's payload: a `text` in its markup, one bullet per update
    let chat = &slack.accepted()[0];
    assert_eq!(
        chat.headers["content-type"].to_str().unwrap(),
        "application/json"
    );
    let text = chat.body["text"].as_str().unwrap();
    assert!(text.starts_with(&format!("*{subject}*")), "{text}");
    assert_eq!(text.matches("\n• ").count(), 2, "{text}");
    assert!(
        text.contains(&format!("{ref_a}: v1.1.0 (")) && text.contains("is available"),
        "{text}"
    );
    // the email: from, both recipients, the subject, a line per update
    let mail = &smtp.messages()[0];
    assert!(
        mail.contains("From: capstan <capstan@test.invalid>"),
        "{mail}"
    );
    assert!(
        mail.contains("ops@test.invalid") && mail.contains("oncall@test.invalid"),
        "{mail}"
    );
    assert!(mail.contains(&format!("Subject: {subject}")), "{mail}");
    assert!(mail.contains(&format!("- {ref_b}: v1.2.0 (")), "{mail}");
    assert!(!mail.contains("mail-s3cret"), "{mail}");
    // Alertmanager holds an alert per update, labelled from the event
    let alerts = eventually(
        Duration::from_secs(30),
        "the alerts in Alertmanager",
        || async {
            let alerts = alertmanager.alerts().await;
            (alerts.len() == 2).then_some(alerts)
        },
    )
    .await;
    let mut named: Vec<(String, String, String)> = alerts
        .iter()
        .map(|a| {
            let l = &a["labels"];
            (
                l["alertname"].as_str().unwrap().to_owned(),
                l["reference"].as_str().unwrap().to_owned(),
                l["tag"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    named.sort();
    let mut want_alerts = vec![
        (
            "update_available".to_owned(),
            ref_a.clone(),
            "v1.1.0".to_owned(),
        ),
        (
            "update_available".to_owned(),
            ref_b.clone(),
            "v1.2.0".to_owned(),
        ),
    ];
    want_alerts.sort();
    assert_eq!(named, want_alerts);
    assert_eq!(alerts[0]["status"]["state"], "active");
    assert!(
        alerts[0]["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("is available")
    );

    // a cycle with nothing new sends nothing; the next new candidate goes out alone
    check_now(&daemon).await;
    registry.push(&a, "v1.2.0", "a3").await;
    check_now(&daemon).await;
    eventually(
        Duration::from_secs(30),
        "the second notifications",
        || async {
            (hook.accepted().len() == 2
                && slack.accepted().len() == 2
                && smtp.messages().len() == 2)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        events(&hook.accepted()[1]),
        [(ref_a.clone(), "v1.2.0".to_owned())]
    );
    assert!(
        smtp.messages()[1].contains("Subject: 1 image update available on "),
        "{}",
        smtp.messages()[1]
    );

    // the channels' view, through the CLI
    let (code, out, err) = daemon.cli(&["notify", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let status: NotifyChannels = serde_json::from_str(&out).unwrap();
    let by_name = |n: &str| {
        status
            .channels
            .iter()
            .find(|c| c.name == n)
            .unwrap_or_else(|| panic!("{n}: {status:?}"))
            .clone()
    };
    assert_eq!((by_name("hook").sent, by_name("hook").failed), (2, 1));
    assert_eq!(
        (by_name("mail").sent, by_name("mail").kind.as_str()),
        (2, "email")
    );
    assert!(
        !out.contains("hook-t0ken") && !out.contains("mail-s3cret"),
        "{out}"
    );

    // the receiver is down when a candidate appears, and capstan stops before it comes back:
    // the message is sent after the restart
    hook.refuse
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((StatusCode::BAD_GATEWAY, None), 1000));
    registry.push(&b, "v1.3.0", "b3").await;
    check_now(&daemon).await;
    eventually(
        Duration::from_secs(30),
        "two failed tries, the others delivered",
        || async {
            (hook.tries() > 4 && slack.accepted().len() == 3 && smtp.messages().len() == 3)
                .then_some(())
        },
    )
    .await;
    assert!(daemon.stop().await.success());
    hook.refuse.lock().unwrap().clear();
    daemon.restart().await;
    eventually(
        Duration::from_mins(1),
        "the delivery after the restart",
        || async { (hook.accepted().len() == 3).then_some(()) },
    )
    .await;
    assert_eq!(
        events(&hook.accepted()[2]),
        [(ref_b.clone(), "v1.3.0".to_owned())]
    );
    // the other channels had delivered it before the stop: not again
    assert_eq!(slack.accepted().len(), 3);
    assert_eq!(smtp.messages().len(), 3);
    assert!(
        daemon.log().contains("notification failed"),
        "{}",
        daemon.log()
    );
    assert!(!daemon.log().contains("hook-t0ken"));
    assert!(!daemon.log().contains("mail-s3cret"));
}

#[tokio::test]
async fn a_bad_channel_is_refused_at_start_naming_it() {
    for (channel, says) in [
        (
            "name = \"mail\"\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:25\"\nfrom = \"a@h\"\nto = [\"b@h\"]\nuser = \"u\"\n",
            "notify[0].password_file",
        ),
        (
            "name = \"chat\"\ntype = \"slack\"\nurl = \"hooks.example/T/B/s3cret\"\n",
            "notify[0].url",
        ),
        ("name = \"x\"\ntype = \"pager\"\n", "pager"),
        // a credential the vault does not keep: said how to keep it
        (
            "name = \"mail\"\ntype = \"email\"\nsmtp = \"smtp://127.0.0.1:25\"\nfrom = \"a@h\"\nto = [\"b@h\"]\nuser = \"u\"\npassword_file = \"vault:smtp\"\n",
            "notify[0].password_file: no credential \"smtp\" is kept; put it there with: capstan secrets set smtp",
        ),
    ] {
        let err = serve_refused(bin(), &format!("[[notify]]\n{channel}")).await;
        assert!(err.contains(says), "{says}: {err}");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
