//! The OpenAPI 3.1 document of the API (`GET /api/v1/openapi.json`), generated from the
//! handlers' own annotations. The role each operation needs comes from the function that
//! enforces it ([`crate::route_role`], from the routes as registered), so the document cannot claim another.

use axum::http::Method;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "capstan",
        description = "Deploys Compose apps, journals images, watches registries, collects logs \
                       and metrics, raises alerts. Every route but health, sign-in and the \
                       registry and git hooks need a bearer token (`capstan tokens create`) or a session \
                       cookie with its `X-CSRF-Token` on changes. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "Apache-2.0")
    ),
    paths(
        routes::health::health,
        routes::session::sign_in,
        routes::session::current,
        routes::session::sign_out,
        routes::session::list_users,
        routes::session::put_user,
        routes::session::remove_user,
        routes::session::end_sessions,
        routes::policy::list,
        routes::policy::allow,
        routes::policy::disallow,
        routes::registries::list,
        routes::registries::login,
        routes::registries::logout,
        routes::access::list,
        routes::access::create,
        routes::access::revoke,
        routes::access::audit,
        routes::events::list,
        routes::events::stream,
        routes::images::list,
        routes::images::detail,
        routes::images::updates,
        routes::images::check_updates,
        routes::images::notify,
        routes::images::registry_hook,
        routes::hooks::receive,
        routes::builds::list,
        routes::builds::one,
        routes::builds::cancel,
        routes::builds::retry,
        routes::hooks::info,
        routes::hooks::new_secret,
        routes::hooks::set_source,
        routes::hooks::remove_source,
        routes::scan::scan,
        routes::scan::findings,
        routes::scan::status,
        routes::scan::import,
        routes::containers::list,
        routes::apps::list_apps,
        routes::targets::list,
        routes::targets::render_self,
        routes::hosts::list,
        routes::hosts::join_token,
        routes::hosts::remove,
        routes::apps::proxy_status,
        routes::apps::plan_app,
        routes::apps::render_app,
        routes::apps::deploy_app,
        routes::apps::build_service,
        routes::apps::list_releases,
        routes::apps::app_replicas,
        routes::apps::down_app,
        routes::apps::rollback_app,
        routes::apps::scale_app,
        routes::apps::stop_app,
        routes::apps::start_app,
        routes::apps::restart_app,
        routes::exec::exec,
        routes::backups::list,
        routes::backups::take,
        routes::backups::restore,
        routes::images::prune,
        routes::logs::search,
        routes::logs::export,
        routes::logs::histogram,
        routes::logs::stream,
        routes::logs::stats,
        routes::metrics::metrics,
        routes::metrics::containers,
        routes::metrics::query,
        routes::alerts::list,
        routes::alerts::history,
        routes::alerts::rules,
        routes::alerts::add_rule,
        routes::alerts::remove_rule,
        routes::alerts::test_rule,
        routes::security::report,
        openapi_json,
    ),
    modifiers(&Access),
    tags(
        (name = "health"), (name = "access", description = "sessions, users, tokens, audit log"),
        (name = "events"), (name = "images", description = "inventory, lifecycle, updates, scans, registry credentials"),
        (name = "containers"), (name = "apps", description = "plan, deploy, rollback, releases"),
        (name = "logs"), (name = "metrics"), (name = "alerts"),
        (name = "security", description = "host checks with CIS Docker Benchmark ids"),
        (name = "pipeline", description = "git webhooks, sources, builds"),
        (name = "backups", description = "apps' volumes into a restic repository"),
        (name = "hosts", description = "the fleet: joined hosts, join tokens"),
        (name = "meta"),
    )
)]
struct ApiDoc;

/// An OpenAPI 3.1 document (<https://spec.openapis.org/oas/v3.1.0>), the fields it always has.
/// Documentation only: the answer is [`document`].
#[derive(utoipa::ToSchema)]
#[expect(dead_code, reason = "the answer is utoipa's document, serialized")]
struct ApiDocument {
    /// `3.1.0`.
    openapi: String,
    info: serde_json::Value,
    paths: serde_json::Value,
    components: serde_json::Value,
}

/// The document itself.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "this document", body = ApiDocument)),
    security(())
)]
pub(crate) async fn openapi_json() -> impl axum::response::IntoResponse {
    // built once: it only changes with the binary
    static JSON: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let body = JSON.get_or_init(|| {
        serde_json::to_string(&document()).unwrap_or_else(|e| {
            serde_json::json!({"error": {"code": "internal", "message": e.to_string()}}).to_string()
        })
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.as_str(),
    )
}

/// The document, with its security schemes and each operation's role.
pub fn document() -> Document {
    // the version is the crate's, which is capstan's
    ApiDoc::openapi()
}

/// Adds the two ways to authenticate, and per operation the role it needs
/// (`x-capstan-role`) and its 401/403 answers.
struct Access;

impl Modify for Access {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("a capstan token: cap_<id>_<secret>"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "capstan_session",
                "from POST /api/v1/session; changes also need the X-CSRF-Token header",
            ))),
        );
        doc.security = Some(vec![
            utoipa::openapi::security::SecurityRequirement::new("token", Vec::<String>::new()),
            utoipa::openapi::security::SecurityRequirement::new("session", Vec::<String>::new()),
        ]);
        for (path, item) in &mut doc.paths.paths {
            for (method, op) in operations(item) {
                document_errors(path, op);
                // operations open to all say so with an empty security requirement
                let open = op.security.as_ref().is_some_and(|s| !s.is_empty());
                if open {
                    continue;
                }
                // a documented operation that is not routed fails the routed-vs-documented test
                let role = crate::route_role(&method, path).unwrap_or(capstan_model::Role::Admin);
                let ext = ExtensionsBuilder::new()
                    .add("x-capstan-role", role.as_str())
                    .build();
                match &mut op.extensions {
                    Some(e) => e.merge(ext),
                    None => op.extensions = Some(ext),
                }
                let responses = &mut op.responses.responses;
                responses.entry("401".into()).or_insert_with(|| {
                    error("no or a bad token or session; sign in or pass a token")
                });
                // a viewer may read everything: a read is refused only to a role below it
                if role != capstan_model::Role::Viewer {
                    responses.entry("403".into()).or_insert_with(|| {
                        error(&format!("this needs the {} role", role.as_str()))
                    });
                } else if method != Method::GET {
                    responses.entry("403".into()).or_insert_with(|| {
                        error("a signed-in change needs the session's X-CSRF-Token")
                    });
                }
            }
        }
    }
}

/// Paths served by a part of capstan that its config can turn off: they answer 404, saying so.
/// (Logs, alerts and the security checks always run in `capstan serve`.)
const SWITCHABLE: [(&str, &str); 3] = [
    (
        "/api/v1/metrics",
        "metrics are off ([metrics] collect or history = false)",
    ),
    (
        "/api/v1/images/updates",
        "registries are not watched ([images] watch = false)",
    ),
    (
        "/api/v1/hooks/registry",
        "registry hooks are off ([images] watch = false)",
    ),
];

/// The error answers every operation of a kind can give, said once here rather than on each:
/// 400 where it takes query parameters or a body (each is checked, an unknown one refused) or
/// an app's or a registry's name (checked as a name); 404 where its path names an object that
/// may not exist (an app's and a registry's routes say their own: a deploy or a login makes
/// one); and every error answer's body is an
/// [`ErrorBody`].
///
/// [`ErrorBody`]: capstan_model::ErrorBody
fn document_errors(path: &str, op: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    let params = op.parameters.as_deref().unwrap_or_default();
    // an app or a registry is named by what a change makes (a deploy, a login): checked as
    // a name (400); a route that finds one missing says its own 404
    let made = |name: &str| matches!(name, "app" | "registry");
    let names_object = params
        .iter()
        .any(|p| matches!(p.parameter_in, ParameterIn::Path) && !made(&p.name));
    let takes_input = op.request_body.is_some()
        || params
            .iter()
            .any(|p| !matches!(p.parameter_in, ParameterIn::Path) || made(&p.name));
    let responses = &mut op.responses.responses;
    if takes_input {
        responses.entry("400".into()).or_insert_with(|| {
            error("a parameter or the body is not valid, or not known; the message names it")
        });
    }
    if names_object {
        responses
            .entry("404".into())
            .or_insert_with(|| error("nothing of that name"));
    }
    if let Some((_, why)) = SWITCHABLE.iter().find(|(p, _)| path.starts_with(p)) {
        responses.entry("404".into()).or_insert_with(|| error(why));
    }
    for (status, response) in responses.iter_mut() {
        if let RefOr::T(r) = response
            && status.parse::<u16>().is_ok_and(|s| s >= 400)
            && r.content.is_empty()
        {
            let described = r.description.clone();
            *response = error(&described);
        }
    }
}

fn error(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            )
            .build(),
    )
}

/// Each operation of a path with its method.
pub(crate) fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> Vec<(Method, &mut utoipa::openapi::path::Operation)> {
    [
        (Method::GET, &mut item.get),
        (Method::POST, &mut item.post),
        (Method::PUT, &mut item.put),
        (Method::PATCH, &mut item.patch),
        (Method::DELETE, &mut item.delete),
        (Method::HEAD, &mut item.head),
        (Method::OPTIONS, &mut item.options),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.as_mut().map(|op| (m, op)))
    .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// Whether `schema` says nothing a client or a property test could check: absent, `{}`, a
    /// bare `object`, or a reference to such a component.
    fn says_nothing(schema: Option<&Value>, components: &Value) -> bool {
        let Some(schema) = schema else { return true };
        if let Some(name) = schema["$ref"].as_str() {
            let name = name.trim_start_matches("#/components/schemas/");
            return says_nothing(components.get(name), components);
        }
        let Some(map) = schema.as_object() else {
            return true;
        };
        let keys: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "description" | "title"))
            .collect();
        keys.is_empty() || keys == ["type"] && schema["type"] == "object"
    }

    #[test]
    fn every_operation_documents_what_it_takes_and_answers_and_its_errors() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let components = &doc["components"]["schemas"];
        let mut bare = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let at = format!("{} {path}", method.to_uppercase());
                if let Some(body) = op.get("requestBody") {
                    for (kind, content) in body["content"].as_object().unwrap() {
                        // a build context is a tar archive: bytes are what it takes
                        if kind != "application/x-tar"
                            && says_nothing(content.get("schema"), components)
                        {
                            bare.push(format!("{at}: its {kind} body"));
                        }
                    }
                }
                for (status, response) in op["responses"].as_object().unwrap() {
                    let content = response["content"].as_object();
                    // no content, and a switch to another protocol (a WebSocket) has none
                    if status == "204" || status == "101" {
                        assert!(
                            content.is_none_or(serde_json::Map::is_empty),
                            "{at} {status}"
                        );
                        continue;
                    }
                    let Some(content) = content.filter(|c| !c.is_empty()) else {
                        bare.push(format!("{at}: its {status} answer has no body"));
                        continue;
                    };
                    for (kind, c) in content {
                        // a stream's events are documented in its description
                        if kind != "text/event-stream" && says_nothing(c.get("schema"), components)
                        {
                            bare.push(format!("{at}: its {status} {kind} answer"));
                        }
                        if status.as_str() >= "400" {
                            assert_eq!(
                                c["schema"]["$ref"], "#/components/schemas/ErrorBody",
                                "{at} {status}: errors are ErrorBody"
                            );
                        }
                    }
                }
                // what takes a query, a body or an app's name checks it: a 400
                let checked = op["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] != "path" || p["name"] == "app"));
                if checked || op.get("requestBody").is_some() {
                    assert!(op["responses"].get("400").is_some(), "{at}: its 400");
                }
            }
        }
        assert!(
            bare.is_empty(),
            "schemas that say nothing:\n{}",
            bare.join("\n")
        );
    }
}
