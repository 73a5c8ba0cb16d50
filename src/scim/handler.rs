//! The SCIM endpoint's HTTP side: `Scim::handle` takes a request under `scim.path` and
//! answers it. In order: the SCIM rate limit (before auth, so guessing tokens is slow too),
//! the bearer token, the body cap and content type, then the route. Every refusal is a SCIM
//! error body (`urn:…:Error`, `status`, `scimType`, `detail`) with an audit `scim_refused`
//! line, and changes nothing; every change logs an audit `scim_change`.

use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Map, Value};

use super::discovery;
use super::filter::{self, parse_filter};
use super::patch;
use super::resources::{
    self, check_group, check_user, Kind, Projection, ERROR_SCHEMA, LIST_SCHEMA,
};
use super::store::{StoreError, Write};
use super::{token_matches, Scim};
use crate::deprovision::EndReason;
use crate::proxy::{self, Body};

const SCIM_JSON: &str = "application/scim+json";
/// The whole body must arrive within this.
const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// A refusal: status, SCIM `scimType` (if any), and the detail sentence (also the audit reason).
#[derive(Debug, Clone, PartialEq)]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<&'static str>,
    pub detail: String,
}

impl ScimError {
    fn new(status: StatusCode, scim_type: Option<&'static str>, detail: impl Into<String>) -> Self {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
        }
    }
    fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }
    fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, None, format!("{what} not found"))
    }
    /// The store refused or could not answer: nothing changed. 503 (try again) when the
    /// shared backend is unreachable, raced, not loaded, or holds a value that fails to open;
    /// 500 when the embedded store failed.
    fn store(e: StoreError) -> Self {
        if matches!(e, StoreError::Failed(_)) {
            return Self::internal(e);
        }
        tracing::error!(target: "samlgate::audit", event = "scim_store_error", error = %e);
        let detail = match e {
            StoreError::Conflict => {
                "the data was changed through another replica at the same moment; send the request again"
            }
            _ => "the SCIM store is temporarily unavailable; nothing was changed",
        };
        Self::new(StatusCode::SERVICE_UNAVAILABLE, None, detail)
    }
    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(target: "samlgate::audit", event = "scim_store_error", error = %e);
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "the change could not be stored",
        )
    }
}

fn scim_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut r = Response::new(proxy::full(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn error_response(e: &ScimError) -> Response<Body> {
    let mut body = json!({
        "schemas": [ERROR_SCHEMA],
        "status": e.status.as_u16().to_string(),
        "detail": e.detail,
    });
    if let Some(t) = e.scim_type {
        body["scimType"] = json!(t);
    }
    let mut r = scim_response(e.status, &body);
    if e.status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"samlgate SCIM\""),
        );
    }
    if e.status == StatusCode::TOO_MANY_REQUESTS || e.status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// What a successful request answers.
struct Answer {
    status: StatusCode,
    body: Option<Value>,
    location: Option<String>,
}

impl Answer {
    fn ok(body: Value) -> Self {
        Answer {
            status: StatusCode::OK,
            body: Some(body),
            location: None,
        }
    }
}

impl Scim {
    /// Answers one request under `scim.path` (the caller routed it here).
    pub async fn handle<B>(&self, req: Request<B>, client: IpAddr) -> Response<Body>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        match self.handle_inner(req).await {
            Ok(a) => {
                let mut r = match &a.body {
                    Some(b) => scim_response(a.status, b),
                    None => {
                        let mut r = Response::new(proxy::full(Bytes::new()));
                        *r.status_mut() = a.status;
                        r
                    }
                };
                if let Some(l) = a.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    r.headers_mut().insert(header::LOCATION, l);
                }
                r
            }
            Err(e) => {
                // A flood's 429s are logged once a second, with how many were not.
                let suppressed = if e.status == StatusCode::TOO_MANY_REQUESTS {
                    match self.flood_log.admit() {
                        Some(n) => n,
                        None => return error_response(&e),
                    }
                } else {
                    0
                };
                tracing::warn!(target: "samlgate::audit", event = "scim_refused", suppressed, method = %method, path = %crate::saml::error::clip(&path), status = e.status.as_u16(), scim_type = e.scim_type.unwrap_or("-"), reason = %e.detail, client = %client);
                error_response(&e)
            }
        }
    }

    async fn handle_inner<B>(&self, req: Request<B>) -> Result<Answer, ScimError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        // Requests without a valid token have their own small budget: they can neither
        // guess tokens quickly nor use up the IdP's.
        if let Err(e) = self.authenticate(req.headers()) {
            if self.failures.check().is_err() {
                return Err(ScimError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    None,
                    "too many SCIM requests without a valid token",
                ));
            }
            return Err(e);
        }
        if self.limiter.check().is_err() {
            return Err(ScimError::new(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                "SCIM rate limit exceeded",
            ));
        }
        let (parts, body) = req.into_parts();
        let rest = parts.uri.path()[self.settings.path.len()..].to_string();
        let query = parse_query(parts.uri.query().unwrap_or(""))?;
        let segments: Vec<&str> = if rest.is_empty() || rest == "/" {
            Vec::new()
        } else {
            rest.trim_start_matches('/').split('/').collect()
        };
        let discovery = matches!(
            segments.first(),
            Some(&("ServiceProviderConfig" | "ResourceTypes" | "Schemas"))
        );
        if discovery && parts.method != Method::GET {
            return Err(ScimError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                None,
                format!("{} is not supported here", parts.method),
            ));
        }
        if !discovery {
            // Answer from the latest data any replica wrote (a no-op without a shared store).
            self.directory.start_sync();
            drop(self.directory.lock().await.map_err(ScimError::store)?);
        }
        let has_body = matches!(parts.method, Method::POST | Method::PUT | Method::PATCH);
        let doc = if has_body {
            check_content_type(&parts.headers)?;
            Some(self.read_json(body).await?)
        } else {
            None
        };
        let m = &parts.method;
        match (m, segments.as_slice()) {
            (&Method::GET, ["ServiceProviderConfig"]) => {
                Ok(Answer::ok(discovery::service_provider_config(
                    &self.base_url,
                    self.settings.max_page_size,
                    self.settings.max_body_bytes,
                )))
            }
            (&Method::GET, ["ResourceTypes"]) => Ok(Answer::ok(discovery::list(
                discovery::resource_types(&self.base_url),
            ))),
            (&Method::GET, ["ResourceTypes", id]) => find_by_id(
                discovery::resource_types(&self.base_url),
                id,
                "resource type",
            ),
            (&Method::GET, ["Schemas"]) => Ok(Answer::ok(discovery::list(discovery::schemas(
                &self.base_url,
            )))),
            (&Method::GET, ["Schemas", id]) => {
                find_by_id(discovery::schemas(&self.base_url), id, "schema")
            }
            // A search over every resource type at once (RFC 7644 §3.4.3).
            (&Method::POST, [".search"]) => {
                let (params, projection) = ListParams::from_search(doc.as_ref())?;
                self.list(&[Kind::User, Kind::Group], &params, &projection)
            }
            (_, [endpoint, tail @ ..]) => {
                let kind = match *endpoint {
                    "Users" => Kind::User,
                    "Groups" => Kind::Group,
                    _ => return Err(ScimError::not_found("endpoint")),
                };
                let projection =
                    Projection::parse(query.get("attributes"), query.get("excludedAttributes"));
                match (m, tail) {
                    (&Method::GET, []) => {
                        self.list(&[kind], &ListParams::from_query(&query)?, &projection)
                    }
                    (&Method::POST, [".search"]) => {
                        let (params, projection) = ListParams::from_search(doc.as_ref())?;
                        self.list(&[kind], &params, &projection)
                    }
                    (&Method::POST, []) => {
                        self.create(kind, doc.unwrap_or(Value::Null), &projection)
                            .await
                    }
                    (&Method::GET, [id]) => self.get(kind, id, &projection),
                    (&Method::PUT, [id]) => {
                        self.replace(kind, id, doc.unwrap_or(Value::Null), &projection)
                            .await
                    }
                    (&Method::PATCH, [id]) => {
                        self.patch(kind, id, doc.unwrap_or(Value::Null), &projection)
                            .await
                    }
                    (&Method::DELETE, [id]) => self.delete(kind, id).await,
                    (_, [] | [_]) => Err(ScimError::new(
                        StatusCode::METHOD_NOT_ALLOWED,
                        None,
                        format!("{m} is not supported here"),
                    )),
                    _ => Err(ScimError::not_found("endpoint")),
                }
            }
            _ => Err(ScimError::not_found("endpoint")),
        }
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<(), ScimError> {
        let unauthorized =
            |why: &str| ScimError::new(StatusCode::UNAUTHORIZED, None, why.to_string());
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(v), None) = (values.next(), values.next()) else {
            return Err(unauthorized(
                "a single Authorization: Bearer header is required",
            ));
        };
        let v = v.as_bytes();
        let token = match v.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => v[7..].trim_ascii(),
            _ => return Err(unauthorized("the Authorization scheme must be Bearer")),
        };
        if token_matches(&self.token_digests, token) {
            Ok(())
        } else {
            Err(unauthorized(
                "the bearer token is not one of scim.token_files",
            ))
        }
    }

    async fn read_json<B>(&self, body: B) -> Result<Value, ScimError>
    where
        B: http_body::Body<Data = Bytes>,
        B::Error: std::error::Error + Send + Sync + 'static,
    {
        let limit = self.settings.max_body_bytes;
        let bytes =
            match tokio::time::timeout(BODY_DEADLINE, Limited::new(body, limit).collect()).await {
                Err(_) => {
                    return Err(ScimError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        None,
                        "the request body did not arrive in time",
                    ))
                }
                Ok(Ok(c)) => c.to_bytes(),
                Ok(Err(e))
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    return Err(ScimError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        None,
                        format!("the request body exceeds scim.max_body_bytes ({limit} bytes)"),
                    ))
                }
                Ok(Err(_)) => {
                    return Err(ScimError::bad(
                        "invalidSyntax",
                        "the request body could not be read",
                    ))
                }
            };
        serde_json::from_slice(&bytes)
            .map_err(|e| ScimError::bad("invalidSyntax", format!("the body is not JSON: {e}")))
    }

    /// Lists the resources of `kinds` matching the filter, one page of them.
    fn list(
        &self,
        kinds: &[Kind],
        params: &ListParams,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let f = match &params.filter {
            Some(f) => Some(
                parse_filter(f)
                    .map_err(|e| ScimError::bad("invalidFilter", format!("filter: {e}")))?,
            ),
            None => None,
        };
        let start = params.start_index.unwrap_or(1).max(1) as usize;
        let max = self.settings.max_page_size;
        let count = params
            .count
            .map_or(max, |c| c.clamp(0, max as i64) as usize);
        let (total, page) = self.directory.read(|s| {
            let mut hits: Vec<(Kind, &Value)> = kinds
                .iter()
                .flat_map(|k| s.of(*k).values().map(move |v| (*k, v)))
                .filter(|(_, v)| f.as_ref().is_none_or(|f| filter::matches(f, v)))
                .collect();
            // A stable order, so pages neither skip nor repeat between calls; borrowed keys,
            // so sorting copies nothing.
            hits.sort_by(|a, b| sort_key(a.1).cmp(&sort_key(b.1)));
            let total = hits.len();
            let page: Vec<Value> = hits
                .into_iter()
                .skip(start - 1)
                .take(count)
                .map(|(k, v)| resources::render(v, &self.base_url, k, projection))
                .collect();
            (total, page)
        });
        Ok(Answer::ok(json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": page.len(),
            "Resources": page,
        })))
    }

    fn get(&self, kind: Kind, id: &str, projection: &Projection) -> Result<Answer, ScimError> {
        self.directory
            .read(|s| {
                s.of(kind)
                    .get(id)
                    .map(|v| resources::render(v, &self.base_url, kind, projection))
            })
            .map(Answer::ok)
            .ok_or_else(|| ScimError::not_found(kind.name()))
    }

    /// Checks a client document of `kind` (schema required for POST/PUT bodies).
    fn check(
        kind: Kind,
        doc: Value,
        require_schema: bool,
    ) -> Result<(Map<String, Value>, String), ScimError> {
        let r = match kind {
            Kind::User => check_user(doc, require_schema),
            Kind::Group => check_group(doc, require_schema),
        };
        r.map_err(|e| match e {
            resources::ResourceError::NotAnObject | resources::ResourceError::MissingSchema(_) => {
                ScimError::bad("invalidSyntax", e.to_string())
            }
            _ => ScimError::bad("invalidValue", e.to_string()),
        })
    }

    /// 409 when another user already has `user_name` (case-insensitive).
    fn check_unique(&self, kind: Kind, name: &str, own_id: Option<&str>) -> Result<(), ScimError> {
        if kind != Kind::User {
            return Ok(());
        }
        let clash = self.directory.read(|s| {
            s.user_id_by_name(name)
                .is_some_and(|id| Some(id.as_str()) != own_id)
        });
        if clash {
            return Err(ScimError::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                "userName is already in use",
            ));
        }
        Ok(())
    }

    async fn create(
        &self,
        kind: Kind,
        doc: Value,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let (m, name) = Self::check(kind, doc, true)?;
        let _turn = self.directory.lock().await.map_err(ScimError::store)?;
        self.check_unique(kind, &name, None)?;
        if self.directory.count() >= self.settings.max_resources {
            return Err(ScimError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                None,
                "scim.max_resources reached",
            ));
        }
        let id = new_id();
        let mut m = m;
        if kind == Kind::User {
            m.entry("active").or_insert(Value::Bool(true));
        }
        let stored = resources::finish(kind, m, &id, None, &now());
        let mut batch = vec![put(kind, &id, &stored)?];
        if kind == Kind::User {
            batch.push(Write::Deleted(name.to_lowercase(), false));
        }
        self.directory
            .commit(batch)
            .await
            .map_err(ScimError::store)?;
        tracing::info!(target: "samlgate::audit", event = "scim_change", op = "create", kind = kind.name(), id = %id, name = %crate::saml::error::clip(&name));
        let active = stored.get("active") != Some(&Value::Bool(false));
        drop(_turn);
        if kind == Kind::User && !active {
            self.deprovision
                .end_user(&name, EndReason::ScimDisabled)
                .await;
        }
        Ok(Answer {
            status: StatusCode::CREATED,
            location: Some(format!("{}/{}/{id}", self.base_url, kind.endpoint())),
            body: Some(resources::render(&stored, &self.base_url, kind, projection)),
        })
    }

    async fn replace(
        &self,
        kind: Kind,
        id: &str,
        doc: Value,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        let (m, _) = Self::check(kind, doc, true)?;
        self.store_change(kind, id, projection, "replace", |_| Ok(m))
            .await
    }

    async fn patch(
        &self,
        kind: Kind,
        id: &str,
        body: Value,
        projection: &Projection,
    ) -> Result<Answer, ScimError> {
        self.store_change(kind, id, projection, "patch", |current| {
            let patched = patch::apply(current, &body)
                .map_err(|e| ScimError::bad(e.scim_type(), e.to_string()))?;
            Ok(Self::check(kind, patched, false)?.0)
        })
        .await
    }

    /// Replaces resource `id` with what `change` makes of it, then applies the effects.
    async fn store_change(
        &self,
        kind: Kind,
        id: &str,
        projection: &Projection,
        op: &'static str,
        change: impl FnOnce(&Value) -> Result<Map<String, Value>, ScimError>,
    ) -> Result<Answer, ScimError> {
        let turn = self.directory.lock().await.map_err(ScimError::store)?;
        let current = self
            .directory
            .read(|s| s.of(kind).get(id).cloned())
            .ok_or_else(|| ScimError::not_found(kind.name()))?;
        let m = change(&current)?;
        let name = m
            .get(if kind == Kind::User {
                "userName"
            } else {
                "displayName"
            })
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.check_unique(kind, &name, Some(id))?;
        let stored = resources::finish(kind, m, id, Some(&current), &now());
        let mut batch = vec![put(kind, id, &stored)?];
        let old_name = current
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if kind == Kind::User && !old_name.eq_ignore_ascii_case(&name) {
            // A renamed user: the old name's sessions belong to the account no longer.
            batch.push(Write::Deleted(name.to_lowercase(), false));
        }
        self.directory
            .commit(batch)
            .await
            .map_err(ScimError::store)?;
        tracing::info!(target: "samlgate::audit", event = "scim_change", op, kind = kind.name(), id = %crate::saml::error::clip(id), name = %crate::saml::error::clip(&name));
        drop(turn);
        if kind == Kind::User {
            let was_active = current.get("active") != Some(&Value::Bool(false));
            let active = stored.get("active") != Some(&Value::Bool(false));
            if was_active && !active {
                self.deprovision
                    .end_user(&name, EndReason::ScimDisabled)
                    .await;
            }
            if !old_name.eq_ignore_ascii_case(&name) {
                self.deprovision
                    .end_user(&old_name, EndReason::ScimDeleted)
                    .await;
            }
        }
        Ok(Answer::ok(resources::render(
            &stored,
            &self.base_url,
            kind,
            projection,
        )))
    }

    async fn delete(&self, kind: Kind, id: &str) -> Result<Answer, ScimError> {
        let turn = self.directory.lock().await.map_err(ScimError::store)?;
        let Some(current) = self.directory.read(|s| s.of(kind).get(id).cloned()) else {
            return Err(ScimError::not_found(kind.name()));
        };
        let mut batch = vec![Write::Delete(kind, id.to_string())];
        let name = current
            .get("userName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if kind == Kind::User {
            batch.push(Write::Deleted(name.to_lowercase(), true));
            // The user leaves every group it was in (RFC 7644 §3.6).
            let groups: Vec<Value> = self.directory.read(|s| {
                s.groups
                    .values()
                    .filter(|g| resources::member_ids(g).any(|m| m == id))
                    .cloned()
                    .collect()
            });
            for mut g in groups {
                let gid = g
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                if let Some(Value::Array(members)) = g.get_mut("members") {
                    members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                }
                batch.push(put(Kind::Group, &gid, &g)?);
            }
        }
        self.directory
            .commit(batch)
            .await
            .map_err(ScimError::store)?;
        tracing::info!(target: "samlgate::audit", event = "scim_change", op = "delete", kind = kind.name(), id = %crate::saml::error::clip(id), name = %crate::saml::error::clip(&name));
        drop(turn);
        if kind == Kind::User {
            self.deprovision
                .end_user(&name, EndReason::ScimDeleted)
                .await;
        }
        Ok(Answer {
            status: StatusCode::NO_CONTENT,
            body: None,
            location: None,
        })
    }
}

fn put(kind: Kind, id: &str, v: &Value) -> Result<Write, ScimError> {
    Ok(Write::Put(
        kind,
        id.to_string(),
        serde_json::to_vec(v).map_err(ScimError::internal)?,
    ))
}

/// Listing order: creation time, then id.
fn sort_key(v: &Value) -> (&str, &str) {
    (
        v.pointer("/meta/created")
            .and_then(Value::as_str)
            .unwrap_or(""),
        v.get("id").and_then(Value::as_str).unwrap_or(""),
    )
}

fn find_by_id(items: Vec<Value>, id: &str, what: &str) -> Result<Answer, ScimError> {
    items
        .into_iter()
        .find(|v| v.get("id").and_then(Value::as_str) == Some(id))
        .map(Answer::ok)
        .ok_or_else(|| ScimError::not_found(what))
}

/// JSON bodies only: `application/scim+json` or `application/json` (any parameters).
fn check_content_type(headers: &HeaderMap) -> Result<(), ScimError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|t| t == SCIM_JSON || t == "application/json");
    if ok {
        Ok(())
    } else {
        Err(ScimError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Some("invalidSyntax"),
            "the body must be application/scim+json or application/json",
        ))
    }
}

/// A list request's parameters, from the query (`GET`) or a SearchRequest body (`POST
/// /.search`).
struct ListParams {
    filter: Option<String>,
    start_index: Option<i64>,
    count: Option<i64>,
}

const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

impl ListParams {
    fn from_query(q: &Query) -> Result<ListParams, ScimError> {
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            q.get(name)
                .map(|v| {
                    v.parse::<i64>().map_err(|_| {
                        ScimError::bad("invalidValue", format!("{name} must be an integer"))
                    })
                })
                .transpose()
        };
        Ok(ListParams {
            filter: q.get("filter").map(str::to_string),
            start_index: int("startIndex")?,
            count: int("count")?,
        })
    }

    fn from_search(doc: Option<&Value>) -> Result<(ListParams, Projection), ScimError> {
        let doc = doc.filter(|d| d.is_object()).ok_or_else(|| {
            ScimError::bad("invalidSyntax", "the body must be a SearchRequest object")
        })?;
        let named = filter::get_ci(doc, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|s| s.as_str() == Some(SEARCH_SCHEMA)));
        if !named {
            return Err(ScimError::bad(
                "invalidSyntax",
                format!("schemas must list {SEARCH_SCHEMA}"),
            ));
        }
        let int = |name: &str| -> Result<Option<i64>, ScimError> {
            match filter::get_ci(doc, name) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => v.as_i64().map(Some).ok_or_else(|| {
                    ScimError::bad("invalidValue", format!("{name} must be an integer"))
                }),
            }
        };
        let list = |name: &str| -> Option<String> {
            filter::get_ci(doc, name)
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                })
        };
        let params = ListParams {
            filter: filter::get_ci(doc, "filter")
                .and_then(Value::as_str)
                .map(str::to_string),
            start_index: int("startIndex")?,
            count: int("count")?,
        };
        let projection = Projection::parse(
            list("attributes").as_deref(),
            list("excludedAttributes").as_deref(),
        );
        Ok((params, projection))
    }
}

/// The query parameters (percent-decoded, `+` as space); a repeated one is refused.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn parse_query(q: &str) -> Result<Query, ScimError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        if out.iter().any(|(ek, _)| ek.eq_ignore_ascii_case(&k)) {
            return Err(ScimError::bad(
                "invalidValue",
                format!("query parameter {k:?} given twice"),
            ));
        }
        out.push((k.into_owned(), v.into_owned()));
    }
    Ok(Query(out))
}

/// A random UUID (version 4) for a new resource.
fn new_id() -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&crate::session::random_id()[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
