//! The dashboard in a real headless Chromium (Debian's `chromium`, driven through Debian's
//! `chromedriver`): signing in by keyboard alone, the overview with live data, new events
//! arriving without a reload, signing out; screenshots at 1280 and 375 px wide are saved under
//! the target directory for review.

use std::time::Duration;

use capstan_testkit::{Browser, Daemon, eventually, unique};
use fantoccini::key::Key;
use fantoccini::{Client, Locator};

use crate::bin;

/// Where screenshots go: `<target>/screenshots` (the binary under test is `<target>/debug/…`).
fn screenshots() -> std::path::PathBuf {
    let dir = bin()
        .parent()
        .and_then(std::path::Path::parent)
        .unwrap()
        .join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Screenshots of the page at 1280 and 375 px wide, then back to 1280. At a phone's width the
/// page must not scroll sideways (wide tables scroll inside their card).
pub(crate) async fn shoot(client: &Client, page: &str) {
    for (width, height) in [(1280, 900), (375, 812)] {
        client.set_window_size(width, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shot = client.screenshot().await.unwrap();
        std::fs::write(screenshots().join(format!("{page}-{width}.png")), shot).unwrap();
        let overflow = client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().is_some_and(|px| px <= 1),
            "the {page} page scrolls sideways at {width} px: {overflow}"
        );
    }
    client.set_window_size(1280, 900).await.unwrap();
}

pub(crate) async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits for `css` to show `want`; when it does not, the failure says what the page showed
/// instead (a page drawn over, an error, a list still loading).
pub(crate) async fn wait_text(client: &Client, css: &str, want: &str) -> String {
    wait_shown(client, css, &format!("show {want:?}"), |t| t.contains(want)).await
}

/// Waits for `css`'s text to be what `good` says (`what`, for the failure).
pub(crate) async fn wait_shown(
    client: &Client,
    css: &str,
    what: &str,
    good: impl Fn(&str) -> bool,
) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let t = text_of(client, css).await;
        if good(&t) {
            return t;
        }
        if tokio::time::Instant::now() >= deadline {
            let page = text_of(client, "#main").await;
            let hash = client
                .execute("return location.hash", vec![])
                .await
                .unwrap_or_default();
            panic!(
                "timed out after 30s waiting for {css} to {what}; it shows {t:?}; the page ({hash}) shows:\n{page}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sign_in_by_keyboard_see_the_overview_live_and_sign_out() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    // collecting the logs of this test's containers (all start with capt-ui), for the logs page
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncontainers = [\"capt-ui*\"]\n",
    )
    .await;
    // an app for the overview to list
    let app = unique("capt-ui");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("compose.yaml"),
        "services:\n  web:\n    image: capstan-test/busybox:1\n    command: [\"sh\", \"-c\", \"echo '{\\\"level\\\":\\\"error\\\",\\\"msg\\\":\\\"ui-boom\\\"}'; exec sleep 3600\"]\n    init: true\n",
    )
    .unwrap();
    let (code, _, err) = daemon
        .cli_in(dir.path(), &["deploy", "-p", &app], &[])
        .await;
    assert_eq!(code, 0, "{err}");

    // the page and its assets come with a policy that runs only their own script
    let resp = reqwest::get(format!("{}/", daemon.url)).await.unwrap();
    assert_eq!(resp.status(), 200);
    let csp = resp.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(resp.text().await.unwrap().contains("/ui/app.js"));

    let browser = Browser::start().await;
    let client = browser.client(1280, 900).await;
    client.goto(&daemon.url).await.unwrap();
    // not signed in: the form, its first field focused
    present(&client, "#signin").await;
    shoot(&client, "signin").await;
    let focused = client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap();
    assert_eq!(focused, "username");
    // keyboard only: Tab past the password to the token, type it, Enter
    let active = client.active_element().await.unwrap();
    active.send_keys(&format!("{}", Key::Tab)).await.unwrap();
    let active = client.active_element().await.unwrap();
    active.send_keys(&format!("{}", Key::Tab)).await.unwrap();
    let active = client.active_element().await.unwrap();
    assert_eq!(active.attr("id").await.unwrap().as_deref(), Some("token"));
    active
        .send_keys(&format!("{}{}", daemon.token, Key::Enter))
        .await
        .unwrap();

    // the overview: the host, the deployed app, who is signed in
    present(&client, "#overview").await;
    wait_text(&client, "#engine-state", "reachable").await;
    wait_text(&client, "#apps", &app).await;
    wait_text(&client, "#who", "admin (admin)").await;
    // times in the browser's zone, from the API's UTC
    // (whatever the shared engine did last: other tests flood it with events of theirs)
    present(&client, "#events table").await;
    let events = text_of(&client, "#events").await;
    assert!(!events.contains('Z'), "times are local: {events}");

    // at a laptop's and a phone's width (one readable column, no sideways scrolling)
    shoot(&client, "overview").await;

    // the alerts page: the rules, and a rule tested from its button (a change: CSRF token sent)
    let (status, _) = daemon
        .post_raw(
            "/api/v1/alerts/rules",
            &serde_json::json!({"name": "ui-oom", "event": "oom"}),
        )
        .await;
    assert_eq!(status, 201);
    client
        .find(Locator::LinkText("Alerts"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#rules", "ui-oom").await;
    click(&client, "button[data-test='ui-oom']").await;
    wait_text(&client, "#rule-test", "ui-oom: would not fire").await;
    shoot(&client, "alerts").await;

    // the security page: the checks run as it opens; the app's service is one object, its
    // container runs as root, with its fix; every check listed
    client
        .find(Locator::LinkText("Security"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let findings = wait_text(&client, "#sec-findings", &format!("{app}/web")).await;
    assert!(findings.contains("runs as root"), "{findings}");
    assert!(
        findings.contains("user: \"1000:1000\""),
        "the fix: {findings}"
    );
    assert!(
        findings.contains(&format!("service {app}/web")),
        "{findings}"
    );
    wait_text(&client, "#sec-checks", "5.31").await;
    wait_text(&client, "#sec-summary", "50 checks").await;
    shoot(&client, "security").await;

    // the events page, filtered to one image of the test's own (other tests flood the shared
    // engine with events of theirs), following new ones live
    let name = unique("capt-ui-img");
    let image = format!("{name}/img:1");
    engine
        .import_rootfs(capstan_testkit::rootfs_with_file(Some(&name)), &image)
        .await
        .unwrap();
    client
        .goto(&format!("{}/#/events?type=image&image={image}", daemon.url))
        .await
        .unwrap();
    eventually(Duration::from_mins(1), "the image's own events", || async {
        // the journal may not have them yet: ask again
        client.refresh().await.ok()?;
        let t = text_of(&client, "#events").await;
        t.contains("import").then_some(())
    })
    .await;
    let later = format!("{name}/img:2");
    engine.tag(&image, &later).await.unwrap();
    let listed = wait_text(&client, "#events", &later).await;
    assert!(!listed.contains(&app), "only the image's events: {listed}");
    shoot(&client, "events").await;
    engine.remove_image(&later, false).await.unwrap();
    engine.remove_image(&image, false).await.unwrap();

    // the logs page: a query, its histogram and lines; then a live tail
    client
        .goto(&format!("{}/#/logs?q=ui-boom&since=1h", daemon.url))
        .await
        .unwrap();
    let lines = eventually(Duration::from_secs(30), "the app's line found", || async {
        // the collector may not have stored it yet: search again
        client.refresh().await.ok()?;
        let t = text_of(&client, "#lines").await;
        t.contains("ui-boom").then_some(t)
    })
    .await;
    assert!(lines.contains("error"), "its level: {lines}");
    client
        .find(Locator::Css("#histogram svg rect"))
        .await
        .unwrap();
    let marker = unique("ui-tail");
    client
        .goto(&format!("{}/#/logs?q={marker}&since=1h&tail=1", daemon.url))
        .await
        .unwrap();
    wait_text(&client, "#lines", "No line matches").await;
    let talker = unique("capt-ui-talker");
    let talker_id = engine
        .create_container(
            &talker,
            capstan_testkit::BUSYBOX,
            &["sh", "-c", &format!("echo {marker}; exec sleep 3600")],
            std::collections::HashMap::new(),
        )
        .await
        .unwrap();
    engine.start_container(&talker_id).await.unwrap();
    wait_text(&client, "#lines", &marker).await;
    // the histogram counts the live line too
    let counted = client
        .execute(
            "return [...document.querySelectorAll('#histogram rect title')]
               .reduce((n, t) => n + Number(t.textContent.split(': ').pop()), 0)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(counted, serde_json::json!(1), "live lines in the histogram");
    shoot(&client, "logs").await;
    engine.remove_container(&talker_id, true).await.unwrap();

    // signing out ends the session: back to the form, and the cookie is worth nothing
    click(&client, "#signout").await;
    present(&client, "#signin").await;
    wait_text(&client, "#signin-error", "Signed out").await;
    client.close().await.unwrap();

    let (code, _, err) = daemon.cli_in(dir.path(), &["down", &app], &[]).await;
    assert_eq!(code, 0, "{err}");
}

/// Waits for an element to be on the page; when it does not come, the failure shows the page
/// (still loading, an error, another page).
pub(crate) async fn present(client: &Client, css: &str) {
    if client.wait().for_element(Locator::Css(css)).await.is_err() {
        let page = client.source().await.unwrap_or_default();
        // what the browser fetched for this page load, and how each fetch ended (a status of
        // 0 is a fetch that failed): what a page stuck on its scripts needs looked at
        let fetched = client
            .execute(
                "return performance.getEntriesByType('resource').map(e => \
                 `${e.name} status=${e.responseStatus} ${Math.round(e.duration)}ms \
                 ${e.transferSize}B`).join('\\n')",
                vec![],
            )
            .await
            .unwrap_or_default();
        panic!(
            "{css} is not on the page after 30 s; the page: {page}\nwhat it fetched:\n{}",
            fetched.as_str().unwrap_or_default()
        );
    }
}

/// Clicks `css` once it is on the page and shown (a page may draw an element before it
/// reveals it, as the navigation does a hub's Hosts link once it knows it is one).
pub(crate) async fn click(client: &Client, css: &str) {
    let element = client.wait().for_element(Locator::Css(css)).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !element.is_displayed().await.unwrap_or(false) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} is on the page but not shown after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    element.click().await.unwrap();
}

/// Signs in with the daemon's token (the keyboard way is the first test's).
pub(crate) async fn sign_in_with_token(client: &Client, daemon: &Daemon) {
    goto(client, daemon, "").await;
    present(client, "#signin").await;
    let field = client.find(Locator::Css("#token")).await.unwrap();
    field
        .send_keys(&format!("{}{}", daemon.token, Key::Enter))
        .await
        .unwrap();
    present(client, "#signout").await;
}

pub(crate) async fn goto(client: &Client, daemon: &Daemon, hash: &str) {
    client
        .goto(&format!("{}/{hash}", daemon.url))
        .await
        .unwrap();
}

/// The `id` of the element with the focus.
async fn focused(client: &Client) -> String {
    client
        .execute("return document.activeElement.id", vec![])
        .await
        .unwrap()
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A key pressed on the keyboard itself (not typed into an element: a file input would take it
/// for a path).
async fn press(client: &Client, key: Key) {
    use fantoccini::actions::{InputSource, KeyAction, KeyActions};
    let value: char = key.into();
    let keys = KeyActions::new("keyboard".to_owned())
        .then(KeyAction::Down { value })
        .then(KeyAction::Up { value });
    client.perform_actions(keys).await.unwrap();
}

/// Waits for the last deploy or rollback on the app page to end, and says how; on a timeout,
/// what the page shows.
async fn release_outcome(client: &Client) -> String {
    let started = std::time::Instant::now();
    loop {
        let outcome = client
            .execute(
                "return document.querySelector('#release-status')?.dataset.outcome || ''",
                vec![],
            )
            .await
            .ok();
        if let Some(o) = outcome
            .as_ref()
            .and_then(|o| o.as_str())
            .filter(|o| !o.is_empty())
        {
            return o.to_owned();
        }
        if started.elapsed() > Duration::from_mins(2) {
            let status = text_of(client, "#release-status").await;
            let steps = text_of(client, "#progress").await;
            let url = client.current_url().await.map(|u| u.to_string());
            panic!(
                "the rollout did not end in 2 min: status {status:?}, steps {steps:?}, at {url:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn sign_in_with_password(client: &Client, daemon: &Daemon, user: &str, password: &str) {
    goto(client, daemon, "").await;
    present(client, "#signin").await;
    let field = client.find(Locator::Css("#username")).await.unwrap();
    field.send_keys(user).await.unwrap();
    let field = client.find(Locator::Css("#password")).await.unwrap();
    field
        .send_keys(&format!("{password}{}", Key::Enter))
        .await
        .unwrap();
    wait_text(client, "#who", user).await;
}

async fn sign_out(client: &Client) {
    click(client, "#signout").await;
    present(client, "#signin").await;
}

#[tokio::test]
async fn deploy_from_the_ui_follow_it_roll_back_and_find_it_audited() {
    let engine = capstan_testkit::engine().await;
    capstan_testkit::ensure_busybox(&engine).await;
    let app = unique("capt-uiapp");
    let daemon = Daemon::start_with(
        bin(),
        engine.host(),
        "[logs]\ncontainers = [\"capt-uiapp*\"]\n\n[metrics]\ninterval = \"1s\"\n",
    )
    .await;
    let operator = format!("op{}", &app[app.len() - 6..]);
    let password = "correct horse battery";
    let (status, body) = daemon
        .post_raw(
            "/api/v1/users",
            &serde_json::json!({"name": operator, "role": "operator", "password": password}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let browser = Browser::start().await;
    let client = browser.client(1280, 900).await;
    sign_in_with_password(&client, &daemon, &operator, password).await;
    wait_text(&client, "#who", "(operator)").await;
    // an operator deploys, but the admin's page is not offered
    let hidden = client
        .execute(
            "return document.querySelector('#nav-access').hidden",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(hidden, serde_json::Value::Bool(true));

    // a new app, from the apps page: its Compose file typed into the page
    click(&client, "a[href='#/apps']").await;
    let name_field = client
        .wait()
        .for_element(Locator::Css("#new-name"))
        .await
        .unwrap();
    name_field
        .send_keys(&format!("{app}{}", Key::Enter))
        .await
        .unwrap();
    let compose = client
        .wait()
        .for_element(Locator::Css("#compose"))
        .await
        .unwrap();
    compose.clear().await.unwrap();
    let v1 = format!(
        "services:\n  web:\n    image: {}\n    command: [\"sh\", \"-c\", \"echo {app}-v1-ready; exec sleep 3600\"]\n    init: true\n    environment:\n      API_KEY: hunter2-{app}\n",
        capstan_testkit::BUSYBOX
    );
    compose.send_keys(&v1).await.unwrap();
    click(&client, "#deploy").await;
    assert_eq!(release_outcome(&client).await, "succeeded");
    let steps = text_of(&client, "#progress").await;
    assert!(steps.contains("web:"), "live progress per service: {steps}");
    wait_text(&client, "#release-status", "Release 1: succeeded").await;
    wait_text(&client, "table", &format!("{app}-web-1")).await;

    // release 2 from an uploaded file
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("compose.yaml");
    std::fs::write(&v2, v1.replace("-v1-", "-v2-")).unwrap();
    client
        .find(Locator::Css("#compose-file"))
        .await
        .unwrap()
        .send_keys(v2.to_str().unwrap())
        .await
        .unwrap();
    eventually(
        Duration::from_secs(10),
        "the file read into the page",
        || async {
            let v = client
                .execute("return document.querySelector('#compose').value", vec![])
                .await
                .ok()?;
            v.as_str().is_some_and(|v| v.contains("-v2-")).then_some(())
        },
    )
    .await;
    click(&client, "#deploy").await;
    assert_eq!(release_outcome(&client).await, "succeeded");
    wait_text(&client, "#release-status", "Release 2: succeeded").await;

    // the diff of the two releases shows the changed command
    present(&client, "#diff-form").await;
    click(&client, "#diff-show").await;
    let diff = wait_text(&client, "#diff", "1 → 2").await;
    assert!(diff.contains("-v1-") && diff.contains("-v2-"), "{diff}");
    // an environment value is never on the page: not in the releases, the diff or the form
    let page = client
        .execute(
            "return document.body.innerHTML + document.querySelector('#compose').value",
            vec![],
        )
        .await
        .unwrap();
    let page = page.as_str().unwrap_or_default();
    assert!(
        !page.contains("hunter2") && page.contains("<redacted:"),
        "an environment value is shown: {page}"
    );
    shoot(&client, "app").await;

    // keyboard: from the page's top, Tab reaches every action in reading order, and Enter
    // works them (a rollback asks first, and Cancel hands the focus back)
    client
        .execute(
            "document.activeElement.blur(); window.scrollTo(0, 0)",
            vec![],
        )
        .await
        .unwrap();
    client
        .execute("document.querySelector('#main').focus()", vec![])
        .await
        .unwrap();
    let mut order = Vec::new();
    for _ in 0..40 {
        press(&client, Key::Tab).await;
        let id = focused(&client).await;
        if !id.is_empty() && !order.contains(&id) {
            order.push(id.clone());
        }
        if id == "rollback" {
            break;
        }
    }
    let want = [
        "diff-from",
        "diff-to",
        "diff-show",
        "compose",
        "compose-file",
        "deploy",
        "rollback-to",
        "rollback",
    ];
    let seen: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|id| want.contains(id))
        .collect();
    assert_eq!(seen, want, "tab order: {order:?}");
    press(&client, Key::Enter).await;
    wait_text(&client, "#confirm-text", "goes back to release 1").await;
    assert_eq!(focused(&client).await, "confirm-cancel");
    press(&client, Key::Enter).await;
    eventually(Duration::from_secs(5), "the dialog closed", || async {
        (focused(&client).await == "rollback").then_some(())
    })
    .await;
    assert_eq!(
        text_of(&client, "#release-status").await,
        "Release 2: succeeded"
    );

    // the rollback, confirmed by keyboard
    press(&client, Key::Enter).await;
    wait_text(&client, "#confirm-text", "goes back to release 1").await;
    press(&client, Key::Tab).await;
    assert_eq!(focused(&client).await, "confirm-ok");
    press(&client, Key::Enter).await;
    assert_eq!(release_outcome(&client).await, "succeeded");
    wait_text(&client, "#release-status", "Release 3: succeeded").await;
    let releases: Vec<capstan_model::Release> =
        daemon.get(&format!("/api/v1/apps/{app}/releases")).await;
    assert_eq!(releases[0].actor, operator, "the ledger names the user");
    assert_eq!(
        releases[0].model, releases[2].model,
        "release 1's model again"
    );

    // the logs of the rolled-back replica, and from a line to its container
    let marker = format!("{app}-v1-ready");
    goto(&client, &daemon, &format!("#/logs?q={marker}&since=1h")).await;
    eventually(
        Duration::from_secs(30),
        "the replica's line found",
        || async {
            client.refresh().await.ok()?;
            let t = text_of(&client, "#lines").await;
            t.contains(&marker).then_some(())
        },
    )
    .await;
    wait_text(&client, "#facets", "web").await;
    click(&client, "#lines a.to-container").await;
    wait_text(&client, "h1", &format!("Container {app}-web-1")).await;
    wait_text(&client, "#c-state", "running").await;
    wait_text(&client, "#lines", &marker).await;
    // a chart with data: the collector reads every second
    eventually(Duration::from_mins(1), "the memory chart drawn", || async {
        client.refresh().await.ok()?;
        client
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#chart-mem svg polyline"))
            .await
            .ok()
    })
    .await;
    shoot(&client, "container").await;

    // a container's page follows its state live: one of the test's own stops, no reload
    let solo = format!("{app}-solo");
    let solo_id = engine
        .create_container(
            &solo,
            capstan_testkit::BUSYBOX,
            &["sleep", "3600"],
            std::collections::HashMap::new(),
        )
        .await
        .unwrap();
    engine.start_container(&solo_id).await.unwrap();
    goto(&client, &daemon, &format!("#/containers/{solo_id}")).await;
    wait_text(&client, "#c-state", "running").await;
    client
        .execute("window.notReloaded = true", vec![])
        .await
        .unwrap();
    engine.stop_container(&solo_id, 0).await.unwrap();
    wait_text(&client, "#c-state", "exited").await;
    wait_text(&client, "#events", "die").await;
    let same = client
        .execute("return window.notReloaded === true", vec![])
        .await
        .unwrap();
    assert_eq!(same, serde_json::Value::Bool(true), "the page was reloaded");
    engine.remove_container(&solo_id, true).await.unwrap();

    // the app page draws its services' use too
    goto(&client, &daemon, &format!("#/apps/{app}")).await;
    eventually(
        Duration::from_mins(1),
        "the app's memory chart drawn",
        || async {
            client.refresh().await.ok()?;
            client
                .wait()
                .at_most(Duration::from_secs(10))
                .for_element(Locator::Css("#app-mem svg polyline"))
                .await
                .ok()
        },
    )
    .await;
    let legend = text_of(&client, "#app-mem").await;
    assert!(legend.contains("web"), "series named by service: {legend}");
    shoot(&client, "app").await;

    // the other pages render, at both widths
    goto(&client, &daemon, "#/apps").await;
    wait_text(&client, "#main", &app).await;
    shoot(&client, "apps").await;
    goto(&client, &daemon, "#/images").await;
    wait_text(&client, "#main", "capstan-test/busybox").await;
    shoot(&client, "images").await;
    click(&client, "#main table a").await;
    present(&client, "#timeline").await;
    shoot(&client, "image").await;
    goto(
        &client,
        &daemon,
        "#/metrics?query=container_memory_working_set_bytes&since=15m",
    )
    .await;
    present(&client, "#chart svg polyline").await;
    shoot(&client, "metrics").await;
    sign_out(&client).await;

    // the admin finds the rollback in the audit log, with who did it
    let field = client.find(Locator::Css("#token")).await.unwrap();
    field
        .send_keys(&format!("{}{}", daemon.token, Key::Enter))
        .await
        .unwrap();
    wait_text(&client, "#who", "admin").await;
    click(&client, "#nav-access").await;
    let audit = wait_text(&client, "#audit", &format!("/api/v1/apps/{app}/rollback")).await;
    assert!(audit.contains(&operator), "{audit}");
    shoot(&client, "access").await;
    // the deploy policy: an allowance made in the page is listed, then taken back
    let field = client.find(Locator::Css("#policy-app")).await.unwrap();
    field.send_keys(&app).await.unwrap();
    let field = client.find(Locator::Css("#policy-feature")).await.unwrap();
    field.send_keys("cap_add=net_admin").await.unwrap();
    click(&client, "#policy-form button[type=submit]").await;
    wait_text(&client, "#main", "cap_add=NET_ADMIN").await;
    let allowed: capstan_model::PolicyList = daemon.get("/api/v1/policy").await;
    assert_eq!(allowed.allowances.len(), 1, "{allowed:?}");
    assert_eq!(allowed.allowances[0].app, app);
    // a viewer token made in the page
    let name_field = client.find(Locator::Css("#token-name")).await.unwrap();
    name_field.send_keys("ui-viewer").await.unwrap();
    click(&client, "#token-form button[type=submit]").await;
    let viewer = wait_text(&client, "#new-token", "cap_").await;
    sign_out(&client).await;

    // a viewer: the page offers no deploy nor rollback, and the API refuses them
    let field = client.find(Locator::Css("#token")).await.unwrap();
    field
        .send_keys(&format!("{viewer}{}", Key::Enter))
        .await
        .unwrap();
    wait_text(&client, "#who", "(viewer)").await;
    goto(&client, &daemon, &format!("#/apps/{app}")).await;
    wait_text(&client, "#main", "Releases").await;
    for css in ["#deploy", "#rollback", "#compose"] {
        assert!(
            client.find(Locator::Css(css)).await.is_err(),
            "{css} shown to a viewer"
        );
    }
    let resp = reqwest::Client::new()
        .post(format!("{}/api/v1/apps/{app}/rollback", daemon.url))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    client.close().await.unwrap();

    let (code, _, err) = daemon.cli_in(dir.path(), &["down", &app], &[]).await;
    assert_eq!(code, 0, "{err}");
}
