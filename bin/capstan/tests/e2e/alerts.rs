//! Alerts through the daemon, on the real engine: an OOM kill, a restart loop, a burst of error
//! lines and a failing health check each fire their rule; alerts reach a real Alertmanager
//! (Debian's `prometheus-alertmanager`) and a webhook receiver of the test's own; a container's
//! health alert waits while its app rolls out; the metrics history and the alerts survive a
//! restart; a bad rule is refused naming its field.

use std::collections::BTreeMap;
use std::time::Duration;

use capstan_engine::{ContainerSpec, Healthcheck};
use capstan_model::{AlertList, AlertState, Event, EventPage, MetricsResult};
use capstan_testkit::{Alertmanager, BUSYBOX, Daemon, eventually, receiver, serve_refused, unique};

use crate::bin;

async fn run(engine: &capstan_engine::Engine, name: &str, spec: &ContainerSpec) -> String {
    let id = engine.create_from_spec(name, spec).await.unwrap();
    engine.start_container(&id).await.unwrap();
    id
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

/// The journal's alert moves (oldest first).
async fn moves(daemon: &Daemon) -> Vec<Event> {
    let page: EventPage = daemon.get("/api/v1/alerts/history?limit=1000").await;
    let mut events = page.events;
    events.reverse();
    events
}

fn about<'a>(events: &'a [Event], rule: &str, label: &str, value: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.actor == rule && e.attributes.get(label).map(String::as_str) == Some(value))
        .collect()
}

async fn firing(daemon: &Daemon, rule: &str, label: &str, value: &str) -> Event {
    eventually(
        Duration::from_secs(90),
        &format!("{rule} firing for {label}={value}"),
        || async {
            let events = moves(daemon).await;
            about(&events, rule, label, value)
                .into_iter()
                .find(|e| e.action == "alert_firing")
                .cloned()
        },
    )
    .await
}

#[tokio::test]
async fn an_oom_kill_fires_and_reaches_alertmanager_and_a_webhook() {
    let engine = capstan_testkit::engine().await;
    let alertmanager = Alertmanager::start().await;
    let (hook_url, hook) = receiver().await;
    let config = format!(
        r#"[logs]
collect = false
[metrics]
interval = "2s"
history = false
[alerts]
evaluate_every = "1s"
disable = ["restart_loop", "unhealthy", "disk_almost_full"]

[[notify]]
name = "hook"
type = "webhook"
url = "{hook_url}"

[[notify]]
name = "am"
type = "alertmanager"
url = "{}"
repeat_every = "2s"
"#,
        alertmanager.url()
    );
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let name = unique("capt-oom");
    let limit: i64 = 24 << 20;
    // a few seconds of ordinary life (the limit and working set are read), then an allocator
    // that never stops: the kernel kills it
    let spec = ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(sh("sleep 8; tail /dev/zero")),
        memory_bytes: Some(limit),
        ..ContainerSpec::default()
    };
    let id = run(&engine, &name, &spec).await;
    let text = eventually(
        Duration::from_mins(1),
        "the container's memory figures",
        || async {
            let text = daemon.metrics_text().await;
            let label = format!("name=\"{name}\"");
            let has = |metric: &str| {
                text.lines()
                    .any(|l| l.starts_with(&format!("{metric}{{")) && l.contains(&label))
            };
            (has("container_spec_memory_limit_bytes") && has("container_memory_working_set_bytes"))
                .then_some(text)
        },
    )
    .await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("container_spec_memory_limit_bytes{")
                && l.contains(&format!("name=\"{name}\""))
                && l.ends_with(&format!(" {limit}"))),
        "the limit is exported"
    );

    let fired = firing(&daemon, "oom", "name", &name).await;
    assert_eq!(
        fired.attributes.get("severity").map(String::as_str),
        Some("critical")
    );
    assert_eq!(
        fired
            .attributes
            .get("annotation.summary")
            .map(String::as_str),
        Some(format!("{name} was killed for lack of memory").as_str())
    );
    // the webhook gets the alert's event
    eventually(Duration::from_mins(1), "the webhook's alert", || async {
        hook.accepted()
            .iter()
            .any(|r| {
                r.body["events"].as_array().is_some_and(|events| {
                    events.iter().any(|e| {
                        e["action"] == "alert_firing" && e["attributes"]["name"] == name.as_str()
                    })
                })
            })
            .then_some(())
    })
    .await;
    // Alertmanager holds it, named after the rule, with its labels and summary
    let alert =
        eventually(
            Duration::from_mins(1),
            "the alert in Alertmanager",
            || async {
                alertmanager.alerts().await.into_iter().find(|a| {
                    a["labels"]["alertname"] == "oom" && a["labels"]["name"] == name.as_str()
                })
            },
        )
        .await;
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["status"]["state"], "active");
    assert_eq!(
        alert["annotations"]["summary"],
        format!("{name} was killed for lack of memory")
    );
    // `capstan alerts` lists it firing
    let (code, out, err) = daemon.cli(&["alerts", "-o", "json"]).await;
    assert_eq!(code, 0, "{err}");
    let list: AlertList = serde_json::from_str(&out).unwrap();
    assert!(
        list.alerts.iter().any(|a| a.rule == "oom"
            && a.state == AlertState::Firing
            && a.labels.get("name") == Some(&name)),
        "{out}"
    );
    // while it fires, Alertmanager is told again (each time with a later end)
    let first_end = alert["endsAt"].as_str().unwrap().to_owned();
    eventually(Duration::from_secs(30), "the alert sent again", || async {
        alertmanager
            .alerts()
            .await
            .into_iter()
            .find(|a| {
                a["labels"]["alertname"] == "oom"
                    && a["labels"]["name"] == name.as_str()
                    && a["endsAt"].as_str().is_some_and(|e| e > first_end.as_str())
            })
            .map(drop)
    })
    .await;
    engine.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn a_restart_loop_fires_and_survives_a_daemon_restart_with_the_metrics_history() {
    let engine = capstan_testkit::engine().await;
    let config = r#"[logs]
collect = false
[metrics]
interval = "2s"
[alerts]
defaults = false
evaluate_every = "1s"

[[alerts.rules]]
name = "crashloop"
event = "restart_loop"
restarts = 3
window = "5m"
keep_firing_for = "10m"
annotations = { summary = "{{ $labels.name }} exited {{ $value }} times" }
"#;
    let mut daemon = Daemon::start_with(bin(), engine.host(), config).await;
    let (looping, steady) = (unique("capt-loop"), unique("capt-steady"));
    let loop_id = run(
        &engine,
        &looping,
        &ContainerSpec {
            image: BUSYBOX.to_owned(),
            cmd: Some(sh("sleep 1; exit 3")),
            restart: Some(("always".into(), 0)),
            ..ContainerSpec::default()
        },
    )
    .await;
    let steady_id = run(
        &engine,
        &steady,
        &ContainerSpec {
            image: BUSYBOX.to_owned(),
            cmd: Some(sh("exec sleep 3600")),
            ..ContainerSpec::default()
        },
    )
    .await;
    let fired = firing(&daemon, "crashloop", "name", &looping).await;
    let count: f64 = fired.attributes["value"].parse().unwrap();
    assert!(count >= 3.0, "{fired:?}");
    assert_eq!(
        fired.attributes.get("annotation.summary"),
        Some(&format!(
            "{looping} exited {} times",
            fired.attributes["value"]
        ))
    );
    // stopping a container is no crash
    engine.stop_container(&steady_id, 1).await.unwrap();
    engine.start_container(&steady_id).await.unwrap();
    engine.stop_container(&steady_id, 1).await.unwrap();
    engine.start_container(&steady_id).await.unwrap();
    engine.stop_container(&steady_id, 1).await.unwrap();
    // `capstan alerts test` evaluates now and says why
    let (code, out, err) = daemon.cli(&["alerts", "test", "crashloop"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("crashloop: would fire"), "{out}");
    assert!(out.contains(&looping), "{out}");
    assert!(!out.contains(&steady), "a stop is no crash: {out}");
    let (code, _, err) = daemon.cli(&["alerts", "test", "no-such-rule"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no rule \"no-such-rule\""), "{err}");

    // some history of the steady container before the restart
    let query = format!("container_memory_usage_bytes{{name=\"{steady}\"}}");
    let before: MetricsResult = eventually(Duration::from_mins(1), "history points", || {
        let (daemon, query) = (&daemon, &query);
        async move {
            let r: MetricsResult = daemon
                .get(&format!(
                    "/api/v1/metrics/query?query={}&since=10m&step=1s",
                    urlencode(query)
                ))
                .await;
            r.series
                .first()
                .is_some_and(|s| s.points.len() >= 3)
                .then_some(r)
        }
    })
    .await;
    assert_eq!(before.resolution, "raw");
    let first_point = before.series[0].points[0].0;

    let stopped_at = chrono::Utc::now();
    daemon.stop().await;
    daemon.restart().await;
    // the alert is still firing, not fired a second time; the history is still there
    let list: AlertList = eventually(
        Duration::from_secs(30),
        "the alert after a restart",
        || async {
            let list: AlertList = daemon.get("/api/v1/alerts").await;
            list.alerts
                .iter()
                .any(|a| a.rule == "crashloop" && a.labels.get("name") == Some(&looping))
                .then_some(list)
        },
    )
    .await;
    let alert = list
        .alerts
        .iter()
        .find(|a| a.rule == "crashloop" && a.labels.get("name") == Some(&looping))
        .unwrap();
    assert_eq!(alert.state, AlertState::Firing);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = moves(&daemon).await;
    let fired: Vec<_> = about(&events, "crashloop", "name", &looping)
        .into_iter()
        .filter(|e| e.action == "alert_firing")
        .collect();
    assert_eq!(fired.len(), 1, "fired once across the restart: {fired:?}");
    let (code, out, err) = daemon
        .cli(&[
            "metrics", &query, "--since", "10m", "--step", "1s", "-o", "json",
        ])
        .await;
    assert_eq!(code, 0, "{err}");
    let after: MetricsResult = serde_json::from_str(&out).unwrap();
    // evaluated at other instants (10m before another now), but from the same first reading
    let first_after = after.series[0].points[0].0;
    assert!(
        first_after < stopped_at && (first_after - first_point).num_milliseconds().abs() <= 1_000,
        "the points from before the restart are kept: {first_after} against {first_point}"
    );
    // the table form reads as a summary per series
    let (code, out, _) = daemon.cli(&["metrics", &query, "--since", "10m"]).await;
    assert_eq!(code, 0);
    assert!(out.contains("container_memory_usage_bytes{"), "{out}");
    assert!(out.contains("raw resolution"), "{out}");
    // a bad query says where
    let (code, _, err) = daemon.cli(&["metrics", "rate(x[5m]"]).await;
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("query") && err.contains("expected `)`"),
        "{err}"
    );

    engine.remove_container(&loop_id, true).await.unwrap();
    engine.remove_container(&steady_id, true).await.unwrap();
}

fn urlencode(s: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/").unwrap();
    url.query_pairs_mut().append_pair("q", s);
    url.query().unwrap().trim_start_matches("q=").to_owned()
}

#[tokio::test]
async fn a_burst_of_error_lines_fires_a_log_rule_and_a_metric_rule_goes_pending_then_firing() {
    let engine = capstan_testkit::engine().await;
    let name = unique("capt-errs");
    let config = format!(
        r#"[logs]
containers = ["{name}"]
[metrics]
interval = "2s"
[alerts]
defaults = false
evaluate_every = "1s"

[[alerts.rules]]
name = "errors"
logs = "container:{name} level:error"
window = "5m"
above = 10
severity = "critical"
labels = {{ team = "web" }}
annotations = {{ summary = "{{{{ $value }}}} error lines" }}

[[alerts.rules]]
name = "busy"
expr = 'container_memory_working_set_bytes{{name="{name}"}} > 0'
for = "3s"
"#
    );
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let id = run(
        &engine,
        &name,
        &ContainerSpec {
            image: BUSYBOX.to_owned(),
            cmd: Some(sh(
                "sleep 2; i=0; while [ $i -lt 25 ]; do echo '{\"level\":\"error\",\"msg\":\"boom\"}'; i=$((i+1)); done; echo '{\"level\":\"info\",\"msg\":\"fine\"}'; exec sleep 3600",
            )),
            ..ContainerSpec::default()
        },
    )
    .await;
    let fired = eventually(Duration::from_secs(90), "the log rule firing", || async {
        moves(&daemon)
            .await
            .into_iter()
            .find(|e| e.actor == "errors" && e.action == "alert_firing")
    })
    .await;
    assert_eq!(
        fired.attributes.get("value").map(String::as_str),
        Some("25")
    );
    assert_eq!(
        fired.attributes.get("team").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        fired
            .attributes
            .get("annotation.summary")
            .map(String::as_str),
        Some("25 error lines")
    );
    // the metric rule went pending, then firing after its `for`
    let busy = eventually(Duration::from_mins(1), "the metric rule firing", || async {
        let events = moves(&daemon).await;
        let ours: Vec<Event> = about(&events, "busy", "name", &name)
            .into_iter()
            .cloned()
            .collect();
        ours.iter()
            .any(|e| e.action == "alert_firing")
            .then_some(ours)
    })
    .await;
    let actions: Vec<&str> = busy.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["alert_pending", "alert_firing"]);
    let since: chrono::DateTime<chrono::Utc> = busy[1].attributes["active_since"].parse().unwrap();
    assert!(
        busy[1].time - since >= chrono::Duration::seconds(3),
        "{busy:?}"
    );
    // the rules as listed
    let (code, out, err) = daemon.cli(&["alerts", "rules"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("errors") && out.contains("more than 10 lines matching"),
        "{out}"
    );
    assert!(out.contains("busy") && out.contains("config"), "{out}");
    // the history, in words
    let (code, out, _) = daemon.cli(&["alerts", "--history"]).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("firing") && out.contains("25 error lines"),
        "{out}"
    );
    engine.remove_container(&id, true).await.unwrap();
}

#[tokio::test]
async fn a_health_alert_waits_while_its_app_rolls_out() {
    let engine = capstan_testkit::engine().await;
    let (hook_url, hook) = receiver().await;
    let config = format!(
        r#"[logs]
collect = false
[alerts]
defaults = false
evaluate_every = "1s"

[[alerts.rules]]
name = "sick"
event = "unhealthy"

[[notify]]
name = "hook"
type = "webhook"
url = "{hook_url}"
"#
    );
    let daemon = Daemon::start_with(bin(), engine.host(), &config).await;
    let app = unique("capt-held");
    let dir = tempfile::tempdir().unwrap();
    // a release that takes about ten seconds to become healthy: the app rolls out that long
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sh\", \"-c\", \"sleep 10; mkdir -p /tmp; touch /tmp/ok; exec sleep 3600\"]\n    init: true\n    healthcheck: {test: \"test -f /tmp/ok\", interval: 1s, timeout: 1s, retries: 60}\n",
    )
    .unwrap();
    let deploy = {
        let (bin, url, token, dir, app) = (
            bin().to_owned(),
            daemon.url.clone(),
            daemon.token.clone(),
            dir.path().to_owned(),
            app.clone(),
        );
        tokio::spawn(async move {
            tokio::process::Command::new(bin)
                .args(["deploy", "-p", &app])
                .current_dir(dir)
                .env("CAPSTAN_URL", url)
                .env("CAPSTAN_TOKEN", token)
                .output()
                .await
                .unwrap()
        })
    };
    // containers of the app (by their Compose label) and one of no app, all failing their check
    let failing = |labels: BTreeMap<String, String>| ContainerSpec {
        image: BUSYBOX.to_owned(),
        cmd: Some(sh("exec sleep 3600")),
        labels,
        healthcheck: Some(Healthcheck {
            test: vec!["CMD".into(), "false".into()],
            interval_ns: Some(500_000_000),
            timeout_ns: Some(1_000_000_000),
            retries: Some(1),
            ..Healthcheck::default()
        }),
        ..ContainerSpec::default()
    };
    let of_app = BTreeMap::from([("com.docker.compose.project".to_owned(), app.clone())]);
    let (gone, lasting, lone) = (
        unique("capt-gone"),
        unique("capt-lasting"),
        unique("capt-lone"),
    );
    let gone_id = run(&engine, &gone, &failing(of_app.clone())).await;
    let lasting_id = run(&engine, &lasting, &failing(of_app)).await;
    let lone_id = run(&engine, &lone, &failing(BTreeMap::new())).await;

    // the lone container's alert fires; the app's wait, listed as held
    firing(&daemon, "sick", "name", &lone).await;
    let list: AlertList = eventually(Duration::from_secs(30), "held alerts", || async {
        let list: AlertList = daemon.get("/api/v1/alerts").await;
        let held = list
            .alerts
            .iter()
            .filter(|a| {
                a.rule == "sick"
                    && a.held
                    && a.state == AlertState::Pending
                    && a.labels.get("app") == Some(&app)
            })
            .count();
        (held == 2).then_some(list)
    })
    .await;
    assert!(!deploy.is_finished(), "held while the deploy ran: {list:?}");
    // one of them recovers (goes away) before the rollout ends: it never fires
    engine.remove_container(&gone_id, true).await.unwrap();
    let out = deploy.await.unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // the other outlives the rollout: it fires then
    firing(&daemon, "sick", "name", &lasting).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = moves(&daemon).await;
    assert!(
        about(&events, "sick", "name", &gone)
            .iter()
            .all(|e| e.action != "alert_firing"),
        "the recovered one never fired: {events:?}"
    );
    eventually(Duration::from_mins(1), "the webhook's messages", || async {
        let sent: Vec<String> = hook
            .accepted()
            .iter()
            .flat_map(|r| r.body["events"].as_array().cloned().unwrap_or_default())
            .filter(|e| e["action"] == "alert_firing")
            .filter_map(|e| e["attributes"]["name"].as_str().map(str::to_owned))
            .collect();
        (sent.contains(&lone) && sent.contains(&lasting)).then_some(sent)
    })
    .await
    .iter()
    .for_each(|n| assert_ne!(n, &gone, "the recovered one was not sent"));
    for id in [lasting_id, lone_id] {
        engine.remove_container(&id, true).await.unwrap();
    }
    let (code, _, err) = daemon.cli_in(dir.path(), &["down", &app], &[]).await;
    assert_eq!(code, 0, "{err}");
}

#[tokio::test]
async fn bad_rules_are_refused_naming_the_field() {
    let engine = capstan_testkit::engine().await;
    for (rule, want) in [
        (
            "name = \"slow\"\nevent = \"oom\"\nfor = \"5x\"\n",
            "alerts.rules[0].for",
        ),
        (
            "name = \"q\"\nexpr = \"rate(container_cpu_usage_seconds_total[5m]\"\n",
            "alerts.rules[0].expr",
        ),
        (
            "name = \"l\"\nlogs = \"level:error AND\"\n",
            "alerts.rules[0].logs",
        ),
        (
            "name = \"t\"\nevent = \"oom\"\ntreshold = 3\n",
            "alerts.rules[0].treshold",
        ),
    ] {
        let config = format!("[alerts]\n[[alerts.rules]]\n{rule}");
        let err = serve_refused(bin(), &config).await;
        assert!(err.contains(want), "{want}: {err}");
    }
    // through the API: the same checks, nothing added
    let daemon = Daemon::start(bin(), engine.host()).await;
    let (status, body) = daemon
        .post_raw(
            "/api/v1/alerts/rules",
            &serde_json::json!({"name": "x", "expr": "up >"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("rule.expr:"),
        "{body}"
    );
    let rules: capstan_model::AlertRules = daemon.get("/api/v1/alerts/rules").await;
    assert!(rules.rules.is_empty(), "{rules:?}");
    // a good one is kept across a restart, and can be removed
    let (status, _) = daemon
        .post_raw(
            "/api/v1/alerts/rules",
            &serde_json::json!({"name": "api-oom", "event": "oom", "labels": {"team": "api"}}),
        )
        .await;
    assert_eq!(status, 201);
    let mut daemon = daemon;
    daemon.stop().await;
    daemon.restart().await;
    let rules: capstan_model::AlertRules = daemon.get("/api/v1/alerts/rules").await;
    assert_eq!(rules.rules.len(), 1);
    assert_eq!(rules.rules[0].source, "api");
    assert_eq!(
        rules.rules[0].labels.get("team").map(String::as_str),
        Some("api")
    );
    let resp = reqwest::Client::new()
        .delete(format!("{}/api/v1/alerts/rules/api-oom", daemon.url))
        .bearer_auth(&daemon.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
}
