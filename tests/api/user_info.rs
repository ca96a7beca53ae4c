//! Legacy getUserInfo data checked against the login's session_key, with
//! the official vectors through the gRPC API.
use serde_json::json;
use tonic::Code;
use wxauth::grpc::pb::{ExchangeCodeRequest, ExchangeCodeResponse, UserInfo};

use crate::helpers::{api_tests, assert_error, TestApp};

api_tests!(
    official_vector_v1_encrypted_user_info_is_verified_and_stored,
    official_vector_v1_fails_for_another_user_or_app,
    official_vector_v2_signed_raw_data_is_verified_and_stored,
    a_bad_signature_stores_nothing_and_a_corrected_retry_of_the_same_code_succeeds,
);

const V1_APP: &str = "wx4f4bc4dec97d474b";
const V1_OPENID: &str = "oGZUI0egBJY1zhBYw2KhdUfwVJJE";
const V1_KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
const V1_IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
const V1_DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";
const V2_RAW: &str = r#"{"nickName":"Band","gender":1,"language":"zh_CN","city":"Guangzhou","province":"Guangdong","country":"CN","avatarUrl":"http://wx.qlogo.cn/mmopen/vi_32/1vZvI39NWFQ9XM4LtQpFrQJ1xlgZxx3w7bQxKARol6503Iuswjjn6nIGBiaycAjAtpujxyzYsrztuuICqIM5ibXQ/0"}"#;
const V2_KEY: &str = "HyVFkGl5F5OQWJZZaNzBBg==";
const V2_SIGNATURE: &str = "75e81ceda165f4ffa64f4068af58c64b8f54b88c";

async fn exchange_with(
    app: &TestApp,
    code: &str,
    info: UserInfo,
) -> Result<ExchangeCodeResponse, tonic::Status> {
    app.client
        .clone()
        .exchange_code(ExchangeCodeRequest {
            code: code.into(),
            user_info: Some(info),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

async fn official_vector_v1_encrypted_user_info_is_verified_and_stored() {
    let app = TestApp::spawn_for_app(V1_APP, |_| {}).await;
    let code = app
        .sim
        .login(json!({ "openid": V1_OPENID, "session_key": V1_KEY }))
        .await
        .code;
    let info = UserInfo {
        encrypted_data: V1_DATA.into(),
        iv: V1_IV.into(),
        ..Default::default()
    };
    let user = exchange_with(&app, &code, info).await.unwrap().user.unwrap();
    assert_eq!(user.nickname, "Band");
    assert!(user.avatar_url.starts_with("http://wx.qlogo.cn/mmopen/vi_32/aSKcBBPpibyKNicHNTMM0qJVh8Kjgiak2AHWr8MHM4WgMEm7GFhsf8OYrySdbvAMvTsw3mo8ibKicsnfN5pRjl1p8HQ/0"));
}

async fn official_vector_v1_fails_for_another_user_or_app() {
    let app = TestApp::spawn_for_app(V1_APP, |_| {}).await;
    let code = app.sim.login(json!({ "session_key": V1_KEY })).await.code;
    let info = UserInfo {
        encrypted_data: V1_DATA.into(),
        iv: V1_IV.into(),
        ..Default::default()
    };
    assert_error(
        exchange_with(&app, &code, info.clone()).await,
        Code::InvalidArgument,
        "USER_INFO_INVALID",
    );

    let other_app = TestApp::spawn().await;
    let code = other_app
        .sim
        .login(json!({ "openid": V1_OPENID, "session_key": V1_KEY }))
        .await
        .code;
    assert_error(
        exchange_with(&other_app, &code, info).await,
        Code::InvalidArgument,
        "USER_INFO_INVALID",
    );
}

async fn official_vector_v2_signed_raw_data_is_verified_and_stored() {
    let app = TestApp::spawn().await;
    let code = app.sim.login(json!({ "session_key": V2_KEY })).await.code;
    let info = UserInfo {
        raw_data: V2_RAW.into(),
        signature: V2_SIGNATURE.into(),
        ..Default::default()
    };
    let response = exchange_with(&app, &code, info).await.unwrap();
    assert_eq!(response.user.unwrap().nickname, "Band");
}

async fn a_bad_signature_stores_nothing_and_a_corrected_retry_of_the_same_code_succeeds() {
    let app = TestApp::spawn().await;
    let code = app.sim.login(json!({ "session_key": V2_KEY })).await.code;
    let forged = UserInfo {
        raw_data: V2_RAW.replace("Band", "Evil"),
        signature: V2_SIGNATURE.into(),
        ..Default::default()
    };
    assert_error(
        exchange_with(&app, &code, forged).await,
        Code::InvalidArgument,
        "USER_INFO_INVALID",
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users", &[]).await,
        0,
        "nothing stored"
    );

    let honest = UserInfo {
        raw_data: V2_RAW.into(),
        signature: V2_SIGNATURE.into(),
        ..Default::default()
    };
    let response = exchange_with(&app, &code, honest).await.unwrap();
    assert!(response.created);
    assert_eq!(response.user.unwrap().nickname, "Band");
    assert_eq!(
        app.sim.calls("jscode2session").await,
        1,
        "the exchange was remembered"
    );
}
