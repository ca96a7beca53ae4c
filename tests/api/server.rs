//! Health, reflection and transport limits, as grpcurl and load balancers see them.
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
    an_oversized_request_is_refused_and_the_server_keeps_serving,
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

async fn an_oversized_request_is_refused_and_the_server_keeps_serving() {
    let app = TestApp::spawn().await;
    let status = app.exchange(&"a".repeat(100 * 1024)).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    assert_eq!(app.sim.calls("jscode2session").await, 0);
    assert!(app.login_new_user().await.created);
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
