//! A compliance officer signs an audit off in a real browser and reads the "Signed off" box
//! (headless Chromium through chromedriver, as `browser.rs`).

use fantoccini::Locator;

use crate::browser::{sign_in, start_browser};
use crate::helpers::spawn_app;

#[tokio::test]
async fn browser_compliance_signs_off_an_audit_and_reads_the_box() {
    let app = spawn_app().await;
    let (_, audit) = crate::signoffs::audited_run(&app);
    let (_driver, client) = start_browser().await;
    sign_in(&client, &app.address, "compliance").await;
    client
        .goto(&format!("{}/audits/{audit}", app.address))
        .await
        .unwrap();
    let statement = "Reviewed in the browser: tables, proxies and consent selection.";
    client
        .wait()
        .for_element(Locator::Css("form.signoff-form #statement"))
        .await
        .unwrap()
        .send_keys(statement)
        .await
        .unwrap();
    client
        .find(Locator::Css("form.signoff-form button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let integrity = client
        .wait()
        .for_element(Locator::Css(".signoff-box .integrity"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(integrity.contains("matches its hash"), "{integrity}");
    let text = |css: &'static str| {
        let client = client.clone();
        async move {
            client
                .find(Locator::Css(css))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        text(".signoff-box .signer").await,
        "compliance@example.test"
    );
    assert_eq!(text(".signoff-box .statement").await, statement);
    assert!(text(".signoff-box code.hash").await.starts_with("sha256:"));
    assert!(text("p.notice").await.contains("Signed off"));
    // The frozen report opens from the box.
    client
        .find(Locator::LinkText("Signed report"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let signer = client
        .wait()
        .for_element(Locator::Css(".signed-report #signature .signer"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(signer, "compliance@example.test");
    assert!(text("#integrity").await.contains("matches its hash"));
    client.close().await.unwrap();
}
