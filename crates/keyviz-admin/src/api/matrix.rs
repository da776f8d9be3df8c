//! `GET /admin/api/v1/keyviz/matrix`: the local view for peers, the merged cluster view
//! for operators.

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::error::json_bytes_ok;
use super::{ApiError, parse_matrix_query};
use crate::auth::Principal;
use crate::config::MAX_BROWSER_ROWS;
use crate::fanout::single_flight::Joined;
use crate::fanout::{self, FlightKey, compact, encode_response, local_matrix};
use crate::state::AdminState;

pub(crate) async fn matrix(
    State(state): State<AdminState>,
    principal: Principal,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let inner = &state.inner;
    if method != Method::GET {
        return Err(ApiError::method_not_allowed("only GET"));
    }
    if !inner.source.is_enabled() {
        return Err(ApiError::keyviz_disabled());
    }
    match principal {
        Principal::Peer(_) => {
            let params = parse_matrix_query(query.as_deref(), inner.config.peer_row_cap)?;
            inner.metrics.matrix_request("peer");
            if let Some(answer) =
                fanout::rounds::answer_peer_round(inner, &params, query.as_deref(), &headers).await
            {
                return answer;
            }
            let m = local_matrix(inner, &params, params.rows).await?;
            if super::accept::accepts(&headers, compact::CONTENT_TYPE) {
                let body = tokio::task::spawn_blocking(move || compact::encode(&m))
                    .await
                    .map_err(ApiError::internal)?
                    .map_err(ApiError::internal)?;
                let mut resp = (StatusCode::OK, body).into_response();
                let h = resp.headers_mut();
                h.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(compact::CONTENT_TYPE),
                );
                h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return Ok(resp);
            }
            Ok(json_bytes_ok(encode_response(&m, None)?))
        }
        Principal::Operator(_) => {
            let params = parse_matrix_query(query.as_deref(), MAX_BROWSER_ROWS)?;
            if let Some(baseline) = super::compare::parse_baseline(query.as_deref())? {
                let body = super::compare::compared(&state, params, baseline).await?;
                return Ok(json_bytes_ok(body));
            }
            let out = cluster_matrix(&state, params).await;
            match out.as_ref() {
                Ok(body) => Ok(json_bytes_ok(body.clone())),
                Err(e) => Err(e.clone()),
            }
        }
    }
}

/// One cluster fan-out of `params` through the single-flight table (joined with
/// identical concurrent requests, reused briefly), counted in `keyviz_matrix_requests`.
/// Returns the encoded response body, or the error every joined caller shares.
pub(crate) async fn cluster_matrix(
    state: &AdminState,
    params: crate::api::MatrixParams,
) -> std::sync::Arc<Result<bytes::Bytes, ApiError>> {
    let inner = &state.inner;
    let key = FlightKey::from(&params);
    let work = inner.clone();
    let (out, joined) = inner
        .flights
        .run(
            key,
            move || async move { std::sync::Arc::new(fanout::run(work, params).await) },
            || std::sync::Arc::new(Err(ApiError::internal("fan-out task panicked"))),
        )
        .await;
    inner.metrics.matrix_request(match joined {
        Joined::Leader => "fanout",
        Joined::Shared => "shared",
        Joined::Reused => "reused",
    });
    out
}
