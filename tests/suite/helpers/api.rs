//! The JSON API as a role calls it: a bearer token of the role's account, and the answer as
//! its status and its body (JSON, or null when there is none).

use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

use super::{TestApp, api_client};

impl TestApp {
    pub fn api(&self, role: &str, method: Method, path: &str) -> RequestBuilder {
        api_client()
            .request(method, self.url(path))
            .bearer_auth(self.token(role))
    }

    pub async fn get_json(&self, role: &str, path: &str) -> (u16, Value) {
        self.api(role, Method::GET, path).answer().await
    }

    /// A GET that must answer 200; its JSON.
    pub async fn get_ok(&self, role: &str, path: &str) -> Value {
        self.api(role, Method::GET, path).expecting(200).await
    }

    pub async fn post_json(&self, role: &str, path: &str, body: Value) -> (u16, Value) {
        self.api(role, Method::POST, path)
            .json(&body)
            .answer()
            .await
    }
}

/// Sending a request and reading its answer in one step.
pub trait Answer {
    /// The status and the JSON body.
    async fn answer(self) -> (u16, Value);
    /// The JSON body of an answer that must have `status` (the test fails otherwise, naming
    /// the request and showing the body).
    async fn expecting(self, status: u16) -> Value;
}

impl Answer for RequestBuilder {
    async fn answer(self) -> (u16, Value) {
        answer(self.send().await.unwrap()).await
    }

    async fn expecting(self, status: u16) -> Value {
        let (client, request) = self.build_split();
        let request = request.expect("a well-formed request");
        let what = format!("{} {}", request.method(), request.url().path());
        let (got, body) = answer(client.execute(request).await.unwrap()).await;
        assert_eq!(got, status, "{what}: {body}");
        body
    }
}

/// The status and the JSON body of a response (null when the body is not JSON).
pub async fn answer(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
