//! The dashboard's page and assets, built into the binary (no build step, nothing fetched from
//! elsewhere). They need no token: the page signs in through `POST /api/v1/session`. A
//! Content-Security-Policy lets the page run only its own scripts (ES modules of this origin)
//! and talk only to this origin.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("../ui/index.html");

const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// Embeds `ui/<path>`, served as `/ui/<path>` with its content type.
macro_rules! assets {
    ($kind:ident: $($path:literal),+ $(,)?) => {
        &[$(($path, $kind, include_str!(concat!("../ui/", $path)))),+]
    };
}

/// The page's style.
const STYLE: &[(&str, &str, &str)] = assets![CSS: "style.css", "vendor/xterm.css"];

/// The page's modules.
const MODULES: &[(&str, &str, &str)] = assets![
    JS:
    "boot.js",
    "app.js",
    "core.js",
    "format.js",
    "html.js",
    "release.js",
    "widgets.js",
    "pages/access.js",
    "pages/alerts.js",
    "pages/apps.js",
    "pages/builds.js",
    "pages/containers.js",
    "pages/events.js",
    "pages/hosts.js",
    "pages/images.js",
    "pages/logs.js",
    "pages/metrics.js",
    "pages/overview.js",
    "pages/security.js",
    "pages/signin.js",
    "pages/terminal.js",
];

/// Third-party files the page loads when it needs them (ui/vendor/README.md): the terminal
/// component. Not modules, and not held to the page's own rules.
const VENDORED: &[(&str, &str, &str)] = assets![JS: "vendor/xterm.js"];

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                      connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; \
                      frame-ancestors 'none'";

fn asset(kind: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, kind),
            (CONTENT_SECURITY_POLICY, POLICY),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (X_FRAME_OPTIONS, "DENY"),
            (CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// Every file the page loads besides itself.
fn assets() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    STYLE.iter().chain(MODULES).chain(VENDORED)
}

/// `/ui/<path>`: one of the embedded files, or 404.
pub(crate) async fn file(Path(path): Path<String>) -> Response {
    match assets().find(|(name, _, _)| *name == path) {
        Some((_, kind, body)) => asset(kind, body),
        None => (StatusCode::NOT_FOUND, "no such file in the dashboard").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::{MODULES, assets};

    /// The files under `src/ui`, as served paths.
    fn on_disk() -> Vec<String> {
        let root = std::path::Path::new(
            &std::env::var("CARGO_MANIFEST_DIR")
                .expect("cargo and nextest set CARGO_MANIFEST_DIR when tests run"),
        )
        .join("src/ui");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.file_name().is_some_and(|n| n != "index.html")
                    // what is vendored says where it comes from, and under which licence
                    && !path.extension().is_some_and(|e| e == "md" || e == "LICENSE")
                {
                    let rel = path.strip_prefix(&root).unwrap();
                    found.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn every_file_of_the_dashboard_is_served() {
        let mut served: Vec<String> = assets().map(|(n, _, _)| n.to_string()).collect();
        served.sort();
        assert_eq!(
            served,
            on_disk(),
            "list the new file in STYLE or MODULES (routes/ui.rs)"
        );
    }

    /// `boot.js` reports what each module answers when the page cannot load them: its list is
    /// every module served but itself.
    #[test]
    fn the_boot_script_knows_every_module() {
        let (_, _, boot) = MODULES.iter().find(|(n, _, _)| *n == "boot.js").unwrap();
        for (name, _, _) in MODULES.iter().filter(|(n, _, _)| *n != "boot.js") {
            assert!(
                boot.contains(&format!("\"{name}\"")),
                "boot.js does not list {name}"
            );
        }
    }

    /// Escape-by-default holds only while no module writes markup but `html.js`: every other
    /// draws through its `put`, which escapes what is not made by the `html` tag.
    #[test]
    fn only_the_template_module_writes_markup() {
        for (name, _, body) in MODULES {
            let writes = [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
            ];
            if *name == "html.js" {
                assert_eq!(
                    body.matches(".innerHTML =").count(),
                    1,
                    "html.js sets innerHTML once"
                );
                continue;
            }
            for w in writes {
                assert!(
                    !body.contains(w),
                    "{name} uses {w}: draw through put() of html.js"
                );
            }
        }
    }
}
