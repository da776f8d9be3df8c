//! `GET /admin/api/v1/keyviz/identity`: this node's id, unauthenticated. Peers use it to
//! address their tokens and to recognise self aliases; the id is not a secret.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::Method;
use serde::Serialize;

use super::{ApiError, json_ok};
use crate::state::AdminState;

#[derive(Serialize)]
struct IdentityResponse<'a> {
    node_id: &'a str,
}

pub(crate) async fn identity(State(state): State<AdminState>, method: Method) -> Response {
    if method != Method::GET {
        return ApiError::method_not_allowed("only GET").into_response();
    }
    json_ok(&IdentityResponse {
        node_id: state.inner.identity.node_id(),
    })
}
