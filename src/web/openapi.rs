//! The OpenAPI 3 document, generated from the handlers' annotations. A test checks that every
//! `/api/v1` route of the table is in it.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "fairseg API", description = "Governed customer segmentation: consent, segments, fairness audits, KPIs."),
    paths(
        super::auth::issue_token,
        super::auth::revoke_token,
        super::auth::me,
        super::auth::change_password_api,
        super::users::list_api,
        super::users::create_api,
        super::users::update_api,
        super::trail::list_api,
        super::trail::verify_api,
        super::policy::api,
        super::record::api,
        super::customer_view::get_api,
        super::dsr::export_api,
        super::dsr::erase_api,
        super::dsr::retention_api,
        super::dsr::log_api,
        super::consent::record_api,
        super::consent::customer_api,
        super::consent::link_api,
        super::consent::coverage_api,
        super::consent::selection_api,
        super::objections::api,
        super::imports::import_api,
        super::imports::list_api,
        super::segmentation::create_api,
        super::segmentation::list_api,
        super::segmentation::get_api,
        super::segmentation::published_api,
        super::segmentation::members_api,
        super::segmentation::strategy_api,
        super::segmentation::rename_api,
        super::segmentation::compare_api,
        super::audits::list_api,
        super::audits::get_api,
        super::audits::override_api,
        super::signoffs::list_api,
        super::signoffs::sign_api,
        super::audits::publish_api,
        super::audits::reaudit_api,
        super::kpi::evaluations_api,
        super::kpi::evaluate_api,
        super::kpi::drift_api,
        super::kpi::rerun_api,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}
