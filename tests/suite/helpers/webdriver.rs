//! A real browser for one test: headless Chromium driven through its own chromedriver, and
//! the actions the browser tests take (go, click, fill, read, wait with a deadline).

use std::ops::Deref;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::poll::{eventually, poll};
use super::{PASSWORD, TestApp};

/// How long a page may take to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A chromedriver process, killed when the test ends.
struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A signed-out browser on one test server. Everything fantoccini's `Client` does is at hand
/// too (`execute`, `find_all`, `set_window_size`, ...).
pub struct Browser {
    client: Client,
    base: String,
    // After the client: the session ends before its driver does.
    _driver: Driver,
}

impl Deref for Browser {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Browser {
    pub async fn start(app: &TestApp) -> Browser {
        let chromedriver = std::env::var("FAIRSEG_CHROMEDRIVER")
            .unwrap_or_else(|_| "/usr/bin/chromedriver".into());
        assert!(
            std::path::Path::new(&chromedriver).exists(),
            "browser tests need chromedriver at {chromedriver} (Debian: chromium-driver; scripts/test installs it) \
             or FAIRSEG_CHROMEDRIVER pointing at one"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            child,
            _profile: tempfile::tempdir().unwrap(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let ready = poll(Duration::from_secs(10), || async {
            let r = reqwest::get(&status).await.ok()?;
            r.status().is_success().then_some(())
        })
        .await;
        assert!(
            ready.is_some(),
            "chromedriver did not come up on port {port}"
        );
        let chromium =
            std::env::var("FAIRSEG_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", driver._profile.path().display()),
                ]
            }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a Chromium session");
        Browser {
            client,
            base: app.address.clone(),
            _driver: driver,
        }
    }

    /// A browser signed in as the role's account, through the sign-in form.
    pub async fn signed_in(app: &TestApp, role: &str) -> Browser {
        let browser = Browser::start(app).await;
        browser.sign_in(role).await;
        browser
    }

    /// Opens a path of the test server.
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_owned()
    }

    /// Asks for a page that needs signing in, signs in on the form it is sent to, and waits
    /// until the browser has left the form (or later lookups would find elements of the page
    /// being replaced).
    pub async fn sign_in(&self, role: &str) {
        self.open("/trail").await;
        assert_eq!(self.path().await, "/signin", "sent to sign in first");
        self.fill("#email", &format!("{role}@example.test")).await;
        self.fill("#password", PASSWORD).await;
        self.click("button[type=submit]").await;
        eventually(
            &format!("signing in as {role} leaves the sign-in page"),
            PATIENCE,
            || async { (self.path().await != "/signin").then_some(()) },
        )
        .await;
    }

    /// Signs out with the form button and waits for the sign-in form.
    pub async fn sign_out(&self) {
        self.click("form[action='/signout'] button").await;
        self.wait_for("#email").await;
    }

    pub async fn find_css(&self, css: &str) -> Element {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on the page: {e}"))
    }

    pub async fn click(&self, css: &str) {
        self.find_css(css).await.click().await.unwrap();
    }

    pub async fn click_link(&self, text: &str) {
        self.client
            .find(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("no link `{text}` on the page: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Types `keys` into the field.
    pub async fn fill(&self, css: &str, keys: &str) {
        self.find_css(css).await.send_keys(keys).await.unwrap();
    }

    /// The element's text, as the reader sees it.
    pub async fn text(&self, css: &str) -> String {
        self.find_css(css).await.text().await.unwrap()
    }

    /// The text of every element `css` matches, in page order.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let mut texts = Vec::new();
        for element in self.client.find_all(Locator::Css(css)).await.unwrap() {
            texts.push(element.text().await.unwrap());
        }
        texts
    }

    /// How many elements `css` matches.
    pub async fn count(&self, css: &str) -> usize {
        self.client.find_all(Locator::Css(css)).await.unwrap().len()
    }

    /// The labels of the main navigation.
    pub async fn nav_labels(&self) -> Vec<String> {
        self.texts("nav[aria-label=Main] a").await
    }

    /// The element, once the page shows it.
    pub async fn wait_for_element(&self, locator: Locator<'_>) -> Element {
        let what = format!("{locator:?}");
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(locator)
            .await
            .unwrap_or_else(|e| panic!("{what} did not appear within {PATIENCE:?}: {e}"))
    }

    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_for_element(Locator::Css(css)).await
    }

    /// The element's text, once the page shows it.
    pub async fn wait_text(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.unwrap()
    }

    /// What a script (without arguments) returns about the page.
    pub async fn facts(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    /// A PNG of the window in target/screenshots/, for review.
    pub async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .unwrap()
            .join("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        self.screenshot_to(&dir.join(format!("{name}.png"))).await;
    }

    pub async fn screenshot_to(&self, path: &std::path::Path) {
        let png = self.client.screenshot().await.unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the browser session, then its driver.
    pub async fn close(self) {
        let Browser {
            client, _driver, ..
        } = self;
        client.close().await.unwrap();
    }
}
