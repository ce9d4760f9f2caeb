//! Pages and forms as a person's browser sends them, over a cookie-keeping client: a page's
//! text, and a form posted with the CSRF token of the page it came from.

use reqwest::{Client, IntoUrl, Response};

use super::csrf_token;

pub trait Pages {
    /// The page's text, whatever its status.
    async fn page(&self, url: impl IntoUrl) -> String;
    /// The page's status and text.
    async fn page_with_status(&self, url: impl IntoUrl) -> (u16, String);
    /// Posts `fields` to `url` with the CSRF token of the form on `page` (its HTML).
    async fn post_form(&self, url: impl IntoUrl, page: &str, fields: &[(&str, &str)]) -> Response;
}

impl Pages for Client {
    async fn page(&self, url: impl IntoUrl) -> String {
        self.page_with_status(url).await.1
    }

    async fn page_with_status(&self, url: impl IntoUrl) -> (u16, String) {
        let response = self.get(url).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    async fn post_form(&self, url: impl IntoUrl, page: &str, fields: &[(&str, &str)]) -> Response {
        let csrf = csrf_token(page);
        let mut form = vec![("csrf_token", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(url).form(&form).send().await.unwrap()
    }
}
