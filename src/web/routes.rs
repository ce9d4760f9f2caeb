//! Every route the server answers, with the access it requires. The table is the single source
//! of truth: the server is configured from it, the access middleware enforces it (a route that
//! is not in it does not exist), and the route × role test walks it.

use actix_web::http::Method;
use actix_web::web;

use crate::policy::Permission;

/// What a route requires of the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in user.
    SignedIn,
    /// A signed-in user whose role holds this permission.
    Permission(Permission),
}

#[derive(Debug, Clone)]
pub struct RouteSpec {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

impl RouteSpec {
    pub fn is_api(&self) -> bool {
        self.path.starts_with("/api/")
    }
}

macro_rules! route_table {
    ($($method:ident $path:literal $access:expr => $handler:path;)+) => {
        /// The route table.
        pub fn table() -> Vec<RouteSpec> {
            vec![$(RouteSpec { method: Method::$method, path: $path, access: $access }),+]
        }

        /// Registers every route of the table with its handler.
        pub fn configure(cfg: &mut web::ServiceConfig) {
            let mut resources: Vec<(&'static str, Option<actix_web::Resource>)> = Vec::new();
            $(add(&mut resources, $path, web::route().method(Method::$method).to($handler));)+
            for (_, resource) in resources {
                cfg.service(resource.expect("each resource is registered once"));
            }
        }
    };
}

/// Routes sharing a path must share one actix resource, or the first would answer 405 for the
/// methods of the second.
fn add(
    resources: &mut Vec<(&'static str, Option<actix_web::Resource>)>,
    path: &'static str,
    route: actix_web::Route,
) {
    match resources.iter_mut().find(|(p, _)| *p == path) {
        Some((_, slot)) => {
            let resource = slot.take().expect("resource present");
            *slot = Some(resource.route(route));
        }
        None => resources.push((path, Some(web::resource(path).route(route)))),
    }
}

use super::{audits, kpi, objections, record, signoffs};
use super::{
    auth, consent, customer_page, customer_view, dsr, home, imports, ops, policy, segmentation,
    trail, users,
};
use Access::{Public, SignedIn};
use Permission::*;

const fn needs(p: Permission) -> Access {
    Access::Permission(p)
}

route_table! {
    GET "/healthz" Public => ops::healthz;
    GET "/metrics" Public => ops::metrics;
    GET "/static/app.css" Public => ops::stylesheet;
    GET "/static/favicon.svg" Public => ops::favicon;
    GET "/favicon.ico" Public => ops::favicon;
    GET "/api/v1/openapi.json" Public => ops::openapi_document;

    GET "/signin" Public => auth::signin_page;
    POST "/signin" Public => auth::signin_submit;
    POST "/signout" SignedIn => auth::signout;
    GET "/account" SignedIn => auth::account_page;
    POST "/account/password" SignedIn => auth::change_password_submit;
    POST "/api/v1/auth/token" Public => auth::issue_token;
    POST "/api/v1/auth/revoke" SignedIn => auth::revoke_token;
    GET "/api/v1/me" SignedIn => auth::me;
    POST "/api/v1/me/password" SignedIn => auth::change_password_api;

    GET "/" SignedIn => home::index;
    GET "/glossary" SignedIn => home::glossary;

    GET "/admin/users" needs(UsersManage) => users::list_page;
    POST "/admin/users" needs(UsersManage) => users::create_submit;
    POST "/admin/users/{id}/role" needs(UsersManage) => users::role_submit;
    POST "/admin/users/{id}/disable" needs(UsersManage) => users::disable_submit;
    POST "/admin/users/{id}/enable" needs(UsersManage) => users::enable_submit;
    POST "/admin/users/{id}/password" needs(UsersManage) => users::reset_password_submit;
    GET "/api/v1/users" needs(UsersManage) => users::list_api;
    POST "/api/v1/users" needs(UsersManage) => users::create_api;
    PATCH "/api/v1/users/{id}" needs(UsersManage) => users::update_api;

    GET "/trail" needs(TrailRead) => trail::page;
    GET "/trail/verify" needs(TrailRead) => trail::verify_page;
    GET "/trail/objections" needs(TrailRead) => objections::page;
    GET "/api/v1/checks/objections" needs(TrailRead) => objections::api;
    GET "/api/v1/trail" needs(TrailRead) => trail::list_api;
    GET "/api/v1/trail/verify" needs(TrailRead) => trail::verify_api;

    GET "/policy" needs(PolicyRead) => policy::page;
    GET "/api/v1/policy" needs(PolicyRead) => policy::api;
    GET "/policy/record" needs(PolicyRead) => record::page;
    GET "/policy/record.md" needs(PolicyRead) => record::markdown;
    GET "/api/v1/policy/record" needs(PolicyRead) => record::api;

    GET "/api/v1/customers/{id}" needs(CustomersRead) => customer_view::get_api;
    GET "/dsr" needs(DsrManage) => dsr::page;
    POST "/dsr/export" needs(DsrManage) => dsr::export_submit;
    POST "/dsr/erase" needs(DsrManage) => dsr::erase_submit;
    POST "/dsr/retention" needs(DsrManage) => dsr::retention_submit;
    GET "/api/v1/dsr" needs(DsrManage) => dsr::log_api;
    GET "/api/v1/customers/{id}/export" needs(DsrManage) => dsr::export_api;
    POST "/api/v1/customers/{id}/erase" needs(DsrManage) => dsr::erase_api;
    POST "/api/v1/retention/apply" needs(DsrManage) => dsr::retention_api;
    GET "/consent" needs(ConsentRecord) => consent::coverage_page;
    GET "/consent/lookup" needs(ConsentRecord) => consent::lookup;
    GET "/consent/customers/{id}" needs(ConsentRecord) => consent::customer_page;
    POST "/consent/customers/{id}/preference-link" needs(ConsentRecord) => consent::link_submit;
    POST "/api/v1/consents" needs(ConsentRecord) => consent::record_api;
    GET "/api/v1/customers/{id}/consents" needs(ConsentRecord) => consent::customer_api;
    POST "/api/v1/customers/{id}/preference-link" needs(ConsentRecord) => consent::link_api;
    GET "/api/v1/consent/coverage" needs(ConsentRecord) => consent::coverage_api;
    GET "/api/v1/consent/selection" needs(AuditsRead) => consent::selection_api;
    // The customer's own page: the signed link in the path is the credential.
    GET "/preferences/{token}" Public => consent::preferences_page;
    POST "/preferences/{token}/withdraw" Public => consent::withdraw_submit;
    POST "/preferences/{token}/grant" Public => consent::grant_submit;
    GET "/customers/import" needs(CustomersImport) => imports::page;
    POST "/customers/import" needs(CustomersImport) => imports::upload;
    GET "/customers/{id}" needs(CustomersRead) => customer_page::page;
    GET "/api/v1/imports" needs(CustomersImport) => imports::list_api;
    POST "/api/v1/imports/{kind}" needs(CustomersImport) => imports::import_api;
    GET "/segments" needs(SegmentsRead) => segmentation::dashboard;
    POST "/segments/{run}/{segment}/name" needs(SegmentsStrategy) => segmentation::rename_submit;
    POST "/segments/{run}/{segment}/strategy" needs(SegmentsStrategy) => segmentation::strategy_submit;
    GET "/segments/{run}/{segment}/export.csv" needs(SegmentsMembers) => segmentation::export_csv;
    GET "/segmentations" needs(SegmentsRun) => segmentation::runs_page;
    POST "/segmentations" needs(SegmentsRun) => segmentation::runs_submit;
    GET "/segmentations/compare" needs(SegmentsRun) => segmentation::compare_page;
    GET "/segmentations/{id}" needs(SegmentsRun) => segmentation::run_page;
    GET "/segmentations/{id}/map.svg" needs(SegmentsRead) => segmentation::map_page;
    GET "/api/v1/segmentations" needs(SegmentsRead) => segmentation::list_api;
    POST "/api/v1/segmentations" needs(SegmentsRun) => segmentation::create_api;
    GET "/api/v1/segmentations/published" needs(SegmentsRead) => segmentation::published_api;
    GET "/api/v1/segmentations/compare" needs(SegmentsRun) => segmentation::compare_api;
    GET "/api/v1/segmentations/{id}" needs(SegmentsRead) => segmentation::get_api;
    GET "/api/v1/segmentations/{id}/members" needs(SegmentsMembers) => segmentation::members_api;
    PATCH "/api/v1/segmentations/{id}/segments/{segment}" needs(SegmentsStrategy) => segmentation::rename_api;
    PUT "/api/v1/segmentations/{id}/segments/{segment}/strategy" needs(SegmentsStrategy) => segmentation::strategy_api;

    GET "/audits" needs(AuditsRead) => audits::list_page;
    GET "/audits/{id}" needs(AuditsRead) => audits::report_page;
    GET "/audits/{id}/compare" needs(AuditsRead) => audits::compare_page;
    GET "/audits/{id}/csv" needs(AuditsRead) => audits::csv_download;
    POST "/audits/{id}/override" needs(AuditsOverride) => audits::override_submit;
    POST "/audits/{id}/signoffs" needs(AuditsSign) => signoffs::sign_submit;
    // The `.json` route first: `{n}` alone would match `1.json` too.
    GET "/audits/{id}/signoffs/{n}.json" needs(AuditsRead) => signoffs::signoff_json;
    GET "/audits/{id}/signoffs/{n}" needs(AuditsRead) => signoffs::signoff_page;
    POST "/segmentations/{id}/publish" needs(SegmentsPublish) => audits::publish_submit;
    POST "/segmentations/{id}/audit" needs(AuditsRead) => audits::reaudit_submit;
    GET "/api/v1/audits" needs(AuditsRead) => audits::list_api;
    GET "/api/v1/audits/{id}" needs(AuditsRead) => audits::get_api;
    POST "/api/v1/audits/{id}/override" needs(AuditsOverride) => audits::override_api;
    GET "/api/v1/audits/{id}/signoffs" needs(AuditsRead) => signoffs::list_api;
    POST "/api/v1/audits/{id}/signoffs" needs(AuditsSign) => signoffs::sign_api;
    POST "/api/v1/segmentations/{id}/publish" needs(SegmentsPublish) => audits::publish_api;
    POST "/api/v1/segmentations/{id}/audit" needs(AuditsRead) => audits::reaudit_api;

    GET "/kpi" needs(KpiRead) => kpi::overview_page;
    GET "/kpi/segments/{segment}" needs(KpiRead) => kpi::segment_page;
    GET "/kpi/runs/{run}/segments/{segment}" needs(KpiRead) => kpi::run_segment_page;
    GET "/kpi/drift" needs(KpiRead) => kpi::drift_page;
    GET "/kpi/log.csv" needs(KpiRead) => kpi::log_csv;
    POST "/kpi/evaluate" needs(KpiEvaluate) => kpi::evaluate_submit;
    POST "/kpi/drift/rerun" needs(SegmentsRun) => kpi::rerun_submit;
    GET "/api/v1/kpi/evaluations" needs(KpiRead) => kpi::evaluations_api;
    POST "/api/v1/kpi/evaluate" needs(KpiEvaluate) => kpi::evaluate_api;
    GET "/api/v1/kpi/drift" needs(KpiRead) => kpi::drift_api;
    POST "/api/v1/segmentations/{id}/rerun" needs(SegmentsRun) => kpi::rerun_api;
}
