//! Domains: an app's `x-capstan.routes` and its services' `io.capstan.route.*` labels, checked
//! and completed (service, port, path), so that a release records exactly what it serves.

use std::collections::BTreeSet;

use crate::model::{CapstanExtension, HttpRoute, Project, Service};

/// Service labels that declare a route, as Traefik users write them: `io.capstan.route.host`
/// (one or more names, comma-separated), `.path`, `.strip_prefix`, `.port`, `.tls`,
/// `.challenge`, `.redirect`.
pub const LABEL_PREFIX: &str = "io.capstan.route.";

/// The ACME challenges capstan answers.
pub const CHALLENGES: [&str; 2] = ["http-01", "tls-alpn-01"];

/// A route capstan cannot serve, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct RouteError {
    /// `x-capstan.routes[1].host`, `services.web.labels`.
    pub path: String,
    pub message: String,
}

fn error(path: impl Into<String>, message: impl Into<String>) -> RouteError {
    RouteError {
        path: path.into(),
        message: message.into(),
    }
}

/// Turns route labels into routes (and drops the labels), then checks every route and fills in
/// what it left out. Running it again on its own result changes nothing.
///
/// # Errors
/// The first route that names no valid host, path, service, port or setting, or a host and
/// path the app routes twice.
pub fn resolve(project: &mut Project) -> Result<(), RouteError> {
    let mut from_labels = Vec::new();
    for (name, service) in &mut project.services {
        from_labels.extend(labeled(name, service)?);
    }
    if !from_labels.is_empty() {
        project
            .capstan
            .get_or_insert_with(CapstanExtension::default)
            .routes
            .extend(from_labels);
    }
    check_backups(project)?;
    let Some(ext) = project.capstan.as_mut() else {
        return Ok(());
    };
    let mut seen = BTreeSet::new();
    for (i, route) in ext.routes.iter_mut().enumerate() {
        let at = |key: &str| format!("x-capstan.routes[{i}].{key}");
        route.host = host(&route.host).map_err(|m| error(at("host"), m))?;
        route.path = path(&route.path).map_err(|m| error(at("path"), m))?;
        if route.strip_prefix && route.path == "/" {
            route.strip_prefix = false;
        }
        let service = match &route.service {
            Some(s) if project.services.contains_key(s) => s.clone(),
            Some(s) => return Err(error(at("service"), format!("no service named {s:?}"))),
            None if project.services.len() == 1 => {
                project.services.keys().next().cloned().unwrap_or_default()
            }
            None => {
                return Err(error(
                    at("service"),
                    "the app has several services: name the one this route goes to",
                ));
            }
        };
        if route.port.is_none() {
            route.port = Some(default_port(&project.services[&service]));
        }
        if route.port == Some(0) {
            return Err(error(at("port"), "0 is not a port number"));
        }
        route.service = Some(service);
        if let Some(tls) = &route.tls
            && !matches!(tls.as_str(), "auto" | "off")
        {
            return Err(error(at("tls"), format!("{tls:?}: say auto or off")));
        }
        if let Some(c) = &route.challenge
            && !CHALLENGES.contains(&c.as_str())
        {
            return Err(error(
                at("challenge"),
                format!("{c:?}: capstan answers {}", CHALLENGES.join(" and ")),
            ));
        }
        if !seen.insert((route.host.clone(), route.path.clone())) {
            return Err(error(
                at("host"),
                format!(
                    "{}{} is routed twice in this app; one route per host and path",
                    route.host, route.path
                ),
            ));
        }
    }
    Ok(())
}

/// Checks `x-capstan.backups`: volumes the app declares, commands of services it has, a
/// schedule and retention that mean something.
fn check_backups(project: &Project) -> Result<(), RouteError> {
    let Some(b) = project.capstan.as_ref().and_then(|c| c.backups.as_ref()) else {
        return Ok(());
    };
    for v in &b.volumes {
        if !project.volumes.contains_key(v) {
            return Err(error(
                "x-capstan.backups.volumes",
                format!("{v:?} is not declared under top-level `volumes:`"),
            ));
        }
    }
    if let Some(every) = &b.every {
        let d = capstan_model::parse_duration(every)
            .map_err(|e| error("x-capstan.backups.every", e.to_string()))?;
        if d.is_zero() {
            return Err(error("x-capstan.backups.every", "say how often: 24h, 6h"));
        }
    }
    for (key, n) in [
        ("keep_last", b.keep_last),
        ("keep_daily", b.keep_daily),
        ("keep_weekly", b.keep_weekly),
    ] {
        if n == Some(0) {
            return Err(error(
                format!("x-capstan.backups.{key}"),
                "0 would keep nothing: at least 1 (or leave it out to keep all)",
            ));
        }
    }
    for (i, hook) in b.before.iter().enumerate() {
        if !project.services.contains_key(&hook.service) {
            return Err(error(
                format!("x-capstan.backups.before[{i}].service"),
                format!("no service named {:?}", hook.service),
            ));
        }
        if hook.command.is_empty() {
            return Err(error(
                format!("x-capstan.backups.before[{i}].command"),
                "a command to run, as a list: [\"sh\", \"-c\", \"...\"]",
            ));
        }
    }
    Ok(())
}

/// A service's `io.capstan.route.*` labels as routes (one per host), removed from its labels.
fn labeled(name: &str, service: &mut Service) -> Result<Vec<HttpRoute>, RouteError> {
    let keys: Vec<String> = service
        .labels
        .keys()
        .filter(|k| k.starts_with(LABEL_PREFIX))
        .cloned()
        .collect();
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let at = |key: &str| format!("services.{name}.labels.{key}");
    let mut template = HttpRoute {
        path: "/".to_owned(),
        service: Some(name.to_owned()),
        ..HttpRoute::default()
    };
    let mut hosts = Vec::new();
    for key in keys {
        let value = service.labels.remove(&key).unwrap_or_default();
        let flag = |v: &str| match v {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(error(at(&key), format!("{other:?}: say true or false"))),
        };
        match &key[LABEL_PREFIX.len()..] {
            "host" => hosts.extend(
                value
                    .split(',')
                    .map(str::trim)
                    .filter(|h| !h.is_empty())
                    .map(str::to_owned),
            ),
            "path" => template.path = value,
            "strip_prefix" => template.strip_prefix = flag(&value)?,
            "redirect" => template.redirect = Some(flag(&value)?),
            "port" => {
                template.port = Some(
                    value
                        .parse()
                        .map_err(|_| error(at(&key), format!("{value:?} is not a port number")))?,
                );
            }
            "tls" => template.tls = Some(value),
            "challenge" => template.challenge = Some(value),
            other => {
                return Err(error(
                    at(&key),
                    format!(
                        "capstan knows no route label {other:?} (host, path, strip_prefix, port, tls, challenge, redirect)"
                    ),
                ));
            }
        }
    }
    if hosts.is_empty() {
        return Err(error(
            at(&format!("{LABEL_PREFIX}host")),
            "a route needs a host name",
        ));
    }
    Ok(hosts
        .into_iter()
        .map(|host| HttpRoute {
            host,
            ..template.clone()
        })
        .collect())
}

/// The port a route reaches unless it names one: the service's only container port, else 80.
fn default_port(service: &Service) -> u16 {
    let mut ports: BTreeSet<u16> = service.ports.iter().map(|p| p.target).collect();
    if ports.is_empty() {
        ports = service
            .expose
            .iter()
            .filter_map(|e| e.split('/').next()?.parse().ok())
            .collect();
    }
    match ports.len() {
        1 => ports.into_iter().next().unwrap_or(80),
        _ => 80,
    }
}

/// A host name as DNS writes it (lowercase, without a trailing dot).
fn host(text: &str) -> Result<String, String> {
    let name = text.trim().trim_end_matches('.').to_ascii_lowercase();
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if name.is_empty() {
        return Err("a route needs a host name (shop.example.com)".to_owned());
    }
    if name.len() > 253 || !name.split('.').all(valid_label) {
        return Err(format!(
            "{text:?} is not a host name: letters, digits and hyphens, in dot-separated parts (no port, no scheme, no wildcard)"
        ));
    }
    Ok(name)
}

/// A path prefix: starts with `/`, no query, no trailing `/` (but `/` itself).
fn path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') {
        return Err(format!("{text:?}: a path prefix starts with /"));
    }
    if text.contains(['?', '#']) || text.chars().any(char::is_whitespace) {
        return Err(format!(
            "{text:?}: a path prefix has no query, fragment or spaces"
        ));
    }
    let trimmed = text.trim_end_matches('/');
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(yaml: &str) -> Project {
        let json = crate::parse_yaml("compose.yaml", yaml).unwrap();
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn routes_are_completed_and_labels_become_routes() {
        let mut p = project(
            "x-capstan:\n  routes:\n    - host: Shop.Example.COM.\n      path: /api/\n      strip_prefix: true\n      service: api\nservices:\n  api:\n    image: x\n    expose: [\"8080\"]\n  web:\n    image: y\n    ports: [\"3000:80\"]\n    labels:\n      io.capstan.route.host: www.example.com, example.com\n      io.capstan.route.tls: \"off\"\n      other: kept\n",
        );
        resolve(&mut p).unwrap();
        let routes = &p.capstan.as_ref().unwrap().routes;
        assert_eq!(routes.len(), 3);
        assert_eq!(
            (routes[0].host.as_str(), routes[0].path.as_str()),
            ("shop.example.com", "/api")
        );
        assert_eq!(
            (routes[0].service.as_deref(), routes[0].port),
            (Some("api"), Some(8080))
        );
        assert_eq!(routes[1].host, "www.example.com");
        assert_eq!(routes[2].host, "example.com");
        assert_eq!(
            (routes[2].service.as_deref(), routes[2].port),
            (Some("web"), Some(80))
        );
        assert_eq!(routes[2].tls.as_deref(), Some("off"));
        assert_eq!(
            p.services["web"].labels.keys().collect::<Vec<_>>(),
            ["other"]
        );
        // resolving the resolved project (the daemon does, after the CLI) changes nothing
        let again = p.clone();
        resolve(&mut p).unwrap();
        assert_eq!(p, again);
    }

    #[test]
    fn bad_routes_are_named() {
        let cases = [
            ("- host: \"shop.example.com:8080\"", "routes[0].host"),
            ("- host: \"*.example.com\"", "routes[0].host"),
            ("- host: \"\"", "routes[0].host"),
            ("- {host: a.example.com, path: api}", "routes[0].path"),
            ("- {host: a.example.com, service: db}", "no service named"),
            ("- {host: a.example.com, tls: maybe}", "routes[0].tls"),
            (
                "- {host: a.example.com, challenge: dns-01}",
                "routes[0].challenge",
            ),
            (
                "- {host: a.example.com}\n    - {host: A.example.com, path: /}",
                "routed twice",
            ),
        ];
        for (routes, expected) in cases {
            let mut p = project(&format!(
                "x-capstan:\n  routes:\n    {routes}\nservices:\n  web:\n    image: x\n"
            ));
            let err = resolve(&mut p).unwrap_err().to_string();
            assert!(err.contains(expected), "{routes}: {err}");
        }
        let mut two = project(
            "x-capstan:\n  routes:\n    - host: a.example.com\nservices:\n  a:\n    image: x\n  b:\n    image: x\n",
        );
        assert!(
            resolve(&mut two)
                .unwrap_err()
                .to_string()
                .contains("name the one")
        );
        for (backups, expected) in [
            ("{volumes: [logs]}", "backups.volumes"),
            ("{every: soon}", "backups.every"),
            ("{keep_daily: 0}", "backups.keep_daily"),
            (
                "{before: [{service: db, command: [\"true\"]}]}",
                "before[0].service",
            ),
            (
                "{before: [{service: web, command: []}]}",
                "before[0].command",
            ),
        ] {
            let mut p = project(&format!(
                "x-capstan:\n  backups: {backups}\nservices:\n  web:\n    image: x\nvolumes:\n  data: {{}}\n"
            ));
            let err = resolve(&mut p).unwrap_err().to_string();
            assert!(err.contains(expected), "{backups}: {err}");
        }
        let mut label = project(
            "services:\n  web:\n    image: x\n    labels:\n      io.capstan.route.hots: a.example.com\n",
        );
        assert!(
            resolve(&mut label)
                .unwrap_err()
                .to_string()
                .contains("no route label \"hots\"")
        );
    }
}
