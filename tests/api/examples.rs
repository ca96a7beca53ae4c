//! The examples in `examples/`, run against a real wxauth: the BFF's HTTP
//! routes and the verify layer an internal service puts in front of its
//! handlers. The files are compiled into this test binary as modules, so a
//! change to wxauth that breaks what they show fails here.
use std::convert::Infallible;

use http::{Request, Response};
use serde_json::{json, Value};
use tonic::Code;
use tower::{ServiceBuilder, ServiceExt};
use wxauth::grpc::pb::User;

use crate::helpers::{api_tests, TestApp};

#[path = "../../examples/bff.rs"]
#[allow(dead_code)] // its main and CLI
mod bff;
#[path = "../../examples/verify_client.rs"]
#[allow(dead_code)]
mod verify_client;

api_tests!(
    sqlite: [
        the_bff_logs_in_binds_a_phone_and_shows_the_user,
        the_bff_answers_a_stale_session_key_with_409_and_a_dead_token_with_401,
        the_verify_layer_hands_the_handler_the_tokens_user_and_refuses_bad_tokens,
    ],
    postgres: [],
);

/// The BFF served on a random port in front of `app`.
struct Bff {
    base_url: String,
    http: reqwest::Client,
}

impl Bff {
    async fn start(app: &TestApp) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let router = bff::router(app.client.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base_url,
            http: reqwest::Client::new(),
        }
    }

    /// `POST path` (a JSON body) or `GET path` (none), with the token as a
    /// bearer if given: the HTTP status and the JSON answer.
    async fn call(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        let mut request = match body {
            Some(body) => self.http.post(url).json(&body),
            None => self.http.get(url),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// `POST /login` with a fresh simulator code: (openid, token).
    async fn login(&self, app: &TestApp) -> (String, String) {
        let login = app.sim.new_code().await;
        let (status, body) = self
            .call("/login", None, Some(json!({ "code": login.code })))
            .await;
        assert_eq!(status, 200, "{body}");
        (login.openid, body["token"].as_str().unwrap().to_owned())
    }
}

async fn the_bff_logs_in_binds_a_phone_and_shows_the_user() {
    let app = TestApp::spawn().await;
    let bff = Bff::start(&app).await;
    let (openid, token) = bff.login(&app).await;

    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    let body = json!({ "phone_code": phone.phone_code });
    let (status, bound) = bff.call("/phone", Some(&token), Some(body)).await;
    assert_eq!(status, 200, "{bound}");
    assert_eq!(bound["user"]["phone_number"], "13580006666");
    assert_eq!(bound["changed"], true);

    let (status, me) = bff.call("/me", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user"]["user_id"], bound["user"]["user_id"]);
    assert_eq!(me["user"]["phone_number"], "13580006666");
    assert!(me["expires_at"].as_str().unwrap().ends_with('Z'), "{me}");
    assert!(
        me["user"].get("openid").is_none(),
        "the mini program gets no openid"
    );
}

async fn the_bff_answers_a_stale_session_key_with_409_and_a_dead_token_with_401() {
    let app = TestApp::spawn().await;
    let bff = Bff::start(&app).await;
    let (openid, token) = bff.login(&app).await;

    // WeChat rotated the key before getPhoneNumber: wxauth cannot open it.
    app.sim.rotate(&openid).await;
    let phone = app
        .sim
        .phone(json!({ "openid": openid, "phone_number": "13580006666" }))
        .await;
    let body = json!({ "encrypted_data": phone.encrypted_data, "iv": phone.iv });
    let (status, stale) = bff.call("/phone", Some(&token), Some(body)).await;
    assert_eq!(
        (status, &stale["error"]),
        (409, &json!("SESSION_KEY_STALE")),
        "{stale}"
    );
    assert!(stale["hint"].as_str().unwrap().contains("wx.login"), "{stale}");

    let (status, missing) = bff.call("/me", None, None).await;
    assert_eq!((status, &missing["error"]), (401, &json!("TOKEN_MISSING")));
    app.revoke(&token, false).await.unwrap();
    let (status, revoked) = bff.call("/me", Some(&token), None).await;
    assert_eq!((status, &revoked["error"]), (401, &json!("TOKEN_REVOKED")));
}

async fn the_verify_layer_hands_the_handler_the_tokens_user_and_refuses_bad_tokens() {
    let app = TestApp::spawn().await;
    let login = app.login_new_user().await;
    let internal = ServiceBuilder::new()
        .layer(verify_client::RequireUserLayer::new(app.client.clone()))
        .service_fn(|request: Request<()>| async move {
            let user = request.extensions().get::<User>().unwrap();
            Ok::<_, Infallible>(Response::new(user.user_id.clone()))
        });
    let call = |authorization: Option<String>| {
        let internal = internal.clone();
        async move {
            let mut request = Request::builder().uri("/example.v1.Orders/List");
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            internal.oneshot(request.body(()).unwrap()).await.unwrap()
        }
    };

    let response = call(Some(format!("Bearer {}", login.session_token))).await;
    assert_eq!(response.into_body(), login.user.unwrap().user_id);

    let refused = |response: Response<String>| tonic::Status::from_header_map(response.headers()).unwrap();
    let status = refused(call(None).await);
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = refused(call(Some("Bearer wxa1_not-a-token".into())).await);
    assert_eq!(status.code(), Code::Unauthenticated);
    assert_eq!(verify_client::reason(&status).as_deref(), Some("TOKEN_INVALID"));
}
