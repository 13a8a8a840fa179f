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

/// Screenshots of the page at 1280 and 375 px wide, then back to 1280.
async fn shoot(client: &Client, page: &str) {
    for (width, height) in [(1280, 900), (375, 812)] {
        client.set_window_size(width, height).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let shot = client.screenshot().await.unwrap();
        std::fs::write(screenshots().join(format!("{page}-{width}.png")), shot).unwrap();
    }
    client.set_window_size(1280, 900).await.unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    match client.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_text(client: &Client, css: &str, want: &str) -> String {
    eventually(
        Duration::from_secs(30),
        &format!("{css} to show {want:?}"),
        || async {
            let t = text_of(client, css).await;
            t.contains(want).then_some(t)
        },
    )
    .await
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
    client
        .wait()
        .for_element(Locator::Css("#signin"))
        .await
        .unwrap();
    let shot = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join("signin-1280.png"), shot).unwrap();
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
    client
        .wait()
        .for_element(Locator::Css("#overview"))
        .await
        .unwrap();
    wait_text(&client, "#engine-state", "reachable").await;
    wait_text(&client, "#apps", &app).await;
    wait_text(&client, "#who", "admin (admin)").await;
    // times in the browser's zone, from the API's UTC
    // (whatever the shared engine did last: other tests flood it with events of theirs)
    client
        .wait()
        .for_element(Locator::Css("#events table"))
        .await
        .unwrap();
    let events = text_of(&client, "#events").await;
    assert!(!events.contains('Z'), "times are local: {events}");

    client.set_window_size(1280, 900).await.unwrap();
    let shot = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join("overview-1280.png"), shot).unwrap();
    // a phone's width: still one readable column
    client.set_window_size(375, 812).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let overflow = client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        overflow.as_i64().is_some_and(|px| px <= 1),
        "the page scrolls sideways at 375 px: {overflow}"
    );
    let shot = client.screenshot().await.unwrap();
    std::fs::write(screenshots().join("overview-375.png"), shot).unwrap();

    client.set_window_size(1280, 900).await.unwrap();

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
    client
        .find(Locator::Css("button[data-test='ui-oom']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(&client, "#rule-test", "ui-oom: would not fire").await;
    shoot(&client, "alerts").await;

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
    shoot(&client, "logs").await;
    engine.remove_container(&talker_id, true).await.unwrap();

    // signing out ends the session: back to the form, and the cookie is worth nothing
    client
        .find(Locator::Css("#signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("#signin"))
        .await
        .unwrap();
    wait_text(&client, "#signin-error", "Signed out").await;
    client.close().await.unwrap();

    let (code, _, err) = daemon.cli_in(dir.path(), &["down", &app], &[]).await;
    assert_eq!(code, 0, "{err}");
}
