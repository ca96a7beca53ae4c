//! Health, reflection and transport limits, as grpcurl and load balancers see them.
use tonic::codegen::http::uri::PathAndQuery;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use tonic_reflection::pb::v1::{
    server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
    server_reflection_response::MessageResponse, ServerReflectionRequest,
};

use crate::helpers::{api_tests, TestApp};

api_tests!(
    health_reports_serving_for_the_server_and_the_auth_service,
    reflection_lists_the_auth_service_without_proto_files,
    reflection_v1alpha_serves_older_clients_too,
    an_oversized_request_is_refused_before_decoding_and_the_server_keeps_serving,
    oversized_health_and_reflection_requests_are_refused,
    shutdown_turns_health_not_serving_and_stops_the_server,
);

async fn health_reports_serving_for_the_server_and_the_auth_service() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    for service in ["", "wxauth.v1.AuthService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
}

async fn reflection_lists_the_auth_service_without_proto_files() {
    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"wxauth.v1.AuthService".to_owned()), "{names:?}");
    assert!(names.contains(&"grpc.health.v1.Health".to_owned()), "{names:?}");
}

/// An ExchangeCodeRequest with a field wxauth does not know: decoders skip
/// unknown fields, so only the size cap can refuse it.
#[derive(Clone, PartialEq, prost::Message)]
struct PaddedExchangeCodeRequest {
    #[prost(string, tag = "1")]
    code: String,
    #[prost(bytes = "vec", tag = "1000")]
    padding: Vec<u8>,
}

/// Over the 64 KiB cap.
const OVERSIZED: usize = 65 * 1024;

/// grpcurl and other older clients still speak v1alpha.
async fn reflection_v1alpha_serves_older_clients_too() {
    use tonic_reflection::pb::v1alpha::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let app = TestApp::spawn().await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::FileContainingSymbol(
            "wxauth.v1.AuthService".into(),
        )),
    };
    let mut responses = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let described = files
        .file_descriptor_proto
        .iter()
        .any(|f| String::from_utf8_lossy(f).contains("ExchangeCode"));
    assert!(described, "the service's file describes its RPCs");
}

async fn an_oversized_request_is_refused_before_decoding_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let exchange = |padding: usize, code: String| {
        let channel = app.channel();
        async move {
            let mut grpc = tonic::client::Grpc::new(channel.await);
            grpc.ready().await.unwrap();
            let request = PaddedExchangeCodeRequest {
                code,
                padding: vec![7; padding],
            };
            grpc.unary::<_, wxauth::grpc::pb::ExchangeCodeResponse, _>(
                tonic::Request::new(request),
                PathAndQuery::from_static("/wxauth.v1.AuthService/ExchangeCode"),
                tonic_prost::ProstCodec::default(),
            )
            .await
        }
    };
    // A valid code: only the size is wrong.
    let status = exchange(OVERSIZED, app.sim.new_code().await.code)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{}", status.message());
    assert_eq!(app.sim.calls("jscode2session").await, 0);
    // Under the cap the same request is served, and so is everyone else.
    assert!(exchange(1024, app.sim.new_code().await.code).await.is_ok());
    assert!(app.login_new_user().await.created);
}

async fn oversized_health_and_reflection_requests_are_refused() {
    let app = TestApp::spawn().await;
    let mut health = HealthClient::new(app.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: "x".repeat(OVERSIZED),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    let mut reflection = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: "x".repeat(OVERSIZED),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let result = reflection
        .server_reflection_info(futures::stream::iter([request]))
        .await;
    // The stream fails or, as tonic-reflection reads it, ends unanswered.
    let answer = match result {
        Err(status) => Err(status),
        Ok(response) => response.into_inner().message().await,
    };
    match answer {
        Err(status) => assert_eq!(status.code(), Code::OutOfRange, "{status:?}"),
        Ok(answer) => assert!(answer.is_none(), "reflection answered an oversized request"),
    }
}

async fn shutdown_turns_health_not_serving_and_stops_the_server() {
    let mut app = TestApp::spawn_with(|c| c.shutdown_grace = std::time::Duration::from_millis(300)).await;
    let login = app.login_new_user().await;
    let mut health = HealthClient::new(app.channel().await);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status,
        ServingStatus::Serving as i32
    );
    app.stop().await;
    // The watch stream saw NOT_SERVING before the server went away.
    let next = watch.message().await;
    assert!(
        matches!(&next, Ok(Some(r)) if r.status == ServingStatus::NotServing as i32),
        "{next:?}"
    );
    assert!(
        app.verify(&login.session_token).await.is_err(),
        "the server is gone"
    );
}
