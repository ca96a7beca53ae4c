//! Every request field has a limit, enforced before any I/O: one field over
//! it is INVALID_ARGUMENT with a BadRequest naming the field's path, and
//! nothing reaches WeChat.
use serde_json::json;
use tonic::Code;
use tonic_types::StatusExt;
use wxauth::domain::validation as limits;
use wxauth::grpc::pb::bind_phone_request::Source;
use wxauth::grpc::pb::exchange_code_request::Phone;
use wxauth::grpc::pb::find_users_request::Key;
use wxauth::grpc::pb::{
    BindPhoneRequest, CheckSessionRequest, EncryptedPhone, ExchangeCodeRequest, FindUsersRequest,
    GetAccessTokenRequest, RevokeTokenRequest, UserInfo, VerifyTokenRequest,
};

use crate::helpers::{api_tests, assert_error, TestApp};

api_tests!(
    one_oversized_field_of_any_request_is_named_and_sends_nothing,
    a_token_is_invalid_up_to_the_hard_cap_and_an_invalid_argument_past_it,
);

/// One RPC with its request.
enum Call {
    Exchange(ExchangeCodeRequest),
    Bind(BindPhoneRequest),
    Verify(String),
    Check(String),
    Revoke(String),
    Find(Key),
    AccessToken(String),
}

impl Call {
    async fn send(self, app: &TestApp) -> Result<(), tonic::Status> {
        let mut client = app.client.clone();
        match self {
            Call::Exchange(r) => client.exchange_code(r).await.map(drop),
            Call::Bind(r) => client.bind_phone(r).await.map(drop),
            Call::Verify(session_token) => client
                .verify_token(VerifyTokenRequest {
                    session_token,
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::Check(session_token) => client
                .check_session(CheckSessionRequest { session_token })
                .await
                .map(drop),
            Call::Revoke(session_token) => client
                .revoke_token(RevokeTokenRequest {
                    session_token,
                    all_sessions: true,
                })
                .await
                .map(drop),
            Call::Find(key) => client
                .find_users(FindUsersRequest { key: Some(key) })
                .await
                .map(drop),
            Call::AccessToken(app_id) => client
                .get_access_token(GetAccessTokenRequest { app_id })
                .await
                .map(drop),
        }
    }
}

fn over(limit: usize) -> String {
    "a".repeat(limit + 1)
}

fn base64_over(limit: usize) -> String {
    "A".repeat(limit + 4)
}

const SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

async fn one_oversized_field_of_any_request_is_named_and_sends_nothing() {
    let app = TestApp::spawn().await;
    let login = app.sim.new_code().await;
    let token = app.exchange(&login.code).await.unwrap().session_token;
    let phone = app
        .sim
        .phone(json!({ "openid": login.openid, "phone_number": "13800138000" }))
        .await;
    let encrypted = EncryptedPhone {
        encrypted_data: phone.encrypted_data.clone(),
        iv: phone.iv.clone(),
    };
    let calls_before = app.sim.total_calls().await;

    // Every other field is valid: had a field not been checked first, the
    // fresh code would be exchanged or the phone code looked up at WeChat.
    let code = app.sim.new_code().await.code;
    let exchange = |f: &dyn Fn(&mut ExchangeCodeRequest)| {
        let mut r = ExchangeCodeRequest {
            code: code.clone(),
            phone: Some(Phone::PhoneCode(phone.phone_code.clone())),
            ..Default::default()
        };
        f(&mut r);
        Call::Exchange(r)
    };
    let with_user_info = |info: UserInfo| {
        exchange(&|r| {
            r.phone = None;
            r.user_info = Some(info.clone());
        })
    };
    let bind = |f: &dyn Fn(&mut BindPhoneRequest)| {
        let mut r = BindPhoneRequest {
            session_token: token.clone(),
            source: Some(Source::PhoneCode(phone.phone_code.clone())),
            login_code: code.clone(),
        };
        f(&mut r);
        Call::Bind(r)
    };
    let signed = |raw_data: String, signature: String| UserInfo {
        raw_data,
        signature,
        ..Default::default()
    };
    let sealed = |encrypted_data: String, iv: String| UserInfo {
        encrypted_data,
        iv,
        ..Default::default()
    };
    let cases: Vec<(&str, Call)> = vec![
        ("code", exchange(&|r| r.code = over(limits::CODE_MAX))),
        ("app_id", exchange(&|r| r.app_id = over(limits::APP_ID_MAX))),
        (
            "phone_code",
            exchange(&|r| r.phone = Some(Phone::PhoneCode(over(limits::CODE_MAX)))),
        ),
        (
            "encrypted_phone.encrypted_data",
            exchange(&|r| {
                r.phone = Some(Phone::EncryptedPhone(EncryptedPhone {
                    encrypted_data: base64_over(limits::ENCRYPTED_DATA_MAX),
                    iv: phone.iv.clone(),
                }))
            }),
        ),
        (
            "encrypted_phone.iv",
            exchange(&|r| {
                r.phone = Some(Phone::EncryptedPhone(EncryptedPhone {
                    encrypted_data: phone.encrypted_data.clone(),
                    iv: base64_over(limits::IV_MAX),
                }))
            }),
        ),
        (
            "user_info.raw_data",
            with_user_info(signed(over(limits::RAW_DATA_MAX), SIGNATURE.into())),
        ),
        (
            "user_info.signature",
            with_user_info(signed("{}".into(), format!("{SIGNATURE}0"))),
        ),
        (
            "user_info.encrypted_data",
            with_user_info(sealed(base64_over(limits::ENCRYPTED_DATA_MAX), phone.iv.clone())),
        ),
        (
            "user_info.iv",
            with_user_info(sealed(phone.encrypted_data.clone(), base64_over(limits::IV_MAX))),
        ),
        (
            "session_token",
            bind(&|r| r.session_token = over(limits::SESSION_TOKEN_MAX)),
        ),
        (
            "phone_code",
            bind(&|r| r.source = Some(Source::PhoneCode(over(limits::CODE_MAX)))),
        ),
        ("login_code", bind(&|r| r.login_code = over(limits::CODE_MAX))),
        (
            "encrypted_phone.encrypted_data",
            bind(&|r| {
                r.source = Some(Source::EncryptedPhone(EncryptedPhone {
                    encrypted_data: base64_over(limits::ENCRYPTED_DATA_MAX),
                    ..encrypted.clone()
                }))
            }),
        ),
        (
            "encrypted_phone.iv",
            bind(&|r| {
                r.source = Some(Source::EncryptedPhone(EncryptedPhone {
                    iv: base64_over(limits::IV_MAX),
                    ..encrypted.clone()
                }))
            }),
        ),
        ("session_token", Call::Verify(over(limits::SESSION_TOKEN_MAX))),
        ("session_token", Call::Check(over(limits::SESSION_TOKEN_MAX))),
        ("session_token", Call::Revoke(over(limits::SESSION_TOKEN_MAX))),
        ("unionid", Call::Find(Key::Unionid(over(limits::USER_KEY_MAX)))),
        ("user_id", Call::Find(Key::UserId(over(limits::USER_KEY_MAX)))),
        ("app_id", Call::AccessToken(over(limits::APP_ID_MAX))),
    ];

    for (field, call) in cases {
        let status = call.send(&app).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        let details = status.get_error_details();
        assert_eq!(details.error_info().unwrap().reason, "INVALID_ARGUMENT");
        let violations = &details.bad_request().expect(field).field_violations;
        let named: Vec<_> = violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(named, [field], "{status:?}");
    }
    assert_eq!(
        app.sim.total_calls().await,
        calls_before,
        "no oversized request reached WeChat"
    );
    // Nothing was spent: the token, the code and the phone code still work.
    app.verify(&token).await.unwrap();
    app.bind_code(&token, &phone.phone_code).await.unwrap();
    assert!(app.exchange(&code).await.is_ok());
}

async fn a_token_is_invalid_up_to_the_hard_cap_and_an_invalid_argument_past_it() {
    let app = TestApp::spawn().await;
    for token in ["", "garbage", &"x".repeat(limits::SESSION_TOKEN_MAX)] {
        assert_error(app.verify(token).await, Code::Unauthenticated, "TOKEN_INVALID");
    }
    assert_error(
        app.verify(&"x".repeat(limits::SESSION_TOKEN_MAX + 1)).await,
        Code::InvalidArgument,
        "INVALID_ARGUMENT",
    );
}
