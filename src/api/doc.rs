//! The API's routes with their documentation. Every route is registered through [`Routes`],
//! which records its method, path and summary next to the handler, so the OpenAPI document at
//! `/api/v1/openapi.json` is generated from the same declarations and cannot miss a route.

use std::sync::Arc;

use axum::Router;
use axum::handler::Handler;
use axum::routing::MethodRouter;
use serde_json::{Value, json};

use crate::server::AppState;

/// One documented route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDoc {
    /// `get`, `post`, `put`, `patch` or `delete`.
    pub method: &'static str,
    /// The path, with `{parameters}`.
    pub path: &'static str,
    /// What it does.
    pub summary: &'static str,
}

/// A router that documents what it routes.
pub struct Routes {
    router: Router<Arc<AppState>>,
    docs: Vec<RouteDoc>,
}

macro_rules! method {
    ($name:ident) => {
        #[doc = concat!("Routes `", stringify!($name), "` on `path` to `handler`, documented by `summary`.")]
        pub fn $name<H, T>(self, path: &'static str, summary: &'static str, handler: H) -> Routes
        where
            H: Handler<T, Arc<AppState>>,
            T: 'static,
        {
            self.add(stringify!($name), path, summary, axum::routing::$name(handler))
        }
    };
}

impl Default for Routes {
    fn default() -> Routes {
        Routes {
            router: Router::new(),
            docs: Vec::new(),
        }
    }
}

impl Routes {
    /// No routes yet.
    pub fn new() -> Routes {
        Routes::default()
    }

    fn add(
        mut self,
        method: &'static str,
        path: &'static str,
        summary: &'static str,
        route: MethodRouter<Arc<AppState>>,
    ) -> Routes {
        self.router = self.router.route(path, route);
        self.docs.push(RouteDoc {
            method,
            path,
            summary,
        });
        self
    }

    method!(get);
    method!(post);
    method!(put);
    method!(patch);
    method!(delete);

    /// Adds another set of routes.
    pub fn merge(mut self, other: Routes) -> Routes {
        self.router = self.router.merge(other.router);
        self.docs.extend(other.docs);
        self
    }

    /// The router and the documentation of its routes.
    pub fn into_parts(self) -> (Router<Arc<AppState>>, Vec<RouteDoc>) {
        (self.router, self.docs)
    }
}

/// The OpenAPI 3 document of `routes`, served by `server`.
pub fn openapi(routes: &[RouteDoc], server: &str) -> Value {
    let mut paths = serde_json::Map::new();
    for r in routes {
        let params: Vec<Value> = r
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let mut op = json!({
            "summary": r.summary,
            "operationId": format!("{}{}", r.method, r.path.replace(['/', '{', '}', '.'], "_")),
            "responses": {
                "2XX": {"description": "success", "content": {"application/json": {}}},
                "400": error, "401": error, "404": error, "409": error,
            },
        });
        if !params.is_empty() {
            op["parameters"] = Value::Array(params);
        }
        if matches!(r.method, "post" | "put" | "patch") {
            op["requestBody"] = json!({"required": false, "content": {"application/json": {"schema": {"type": "object"}}}});
        }
        let entry = paths.entry(r.path.to_owned()).or_insert_with(|| json!({}));
        entry[r.method] = op;
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Jinke school API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Lessons, join tokens, classroom controls, attendance and settings of a school. Every call carries Authorization: Bearer <the school's API key>.",
        },
        "servers": [{"url": server}],
        "security": [{"apiKey": []}],
        "components": {
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": {
                "type": "object",
                "properties": {"error": {"type": "object", "properties": {
                    "code": {"type": "string"}, "message": {"type": "string"}}}},
            }},
        },
        "paths": paths,
    })
}
