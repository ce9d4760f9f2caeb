//! What every handler shares, built once at start by `crate::startup`.

use std::sync::Arc;

use crate::auth::csrf::CsrfKey;
use crate::auth::token::TokenKeys;
use crate::config::Settings;
use crate::customers::Pseudonymizer;
use crate::db::Db;
use crate::policy::Policy;
use crate::web::access::RouteIndex;
use crate::web::metrics::Metrics;

/// Everything handlers share.
pub struct AppState {
    pub db: Db,
    pub policy: Arc<Policy>,
    pub tokens: TokenKeys,
    pub csrf: CsrfKey,
    pub settings: Settings,
    pub metrics: Metrics,
    /// The queue reads wait in for their turn.
    pub admission: crate::web::admission::Admission,
    pub routes: RouteIndex,
    pub pseudonyms: Pseudonymizer,
    /// Signs and checks customers' preference links.
    pub preference_links: crate::consent::link::PreferenceLinks,
    /// The background queue of segmentation runs.
    pub jobs: crate::app::jobs::Jobs,
    /// The base of every absolute link the server hands out (FAIRSEG_PUBLIC_URL).
    pub public_url: crate::config::PublicUrl,
}
