//! The home page: what each role can do from here.

use actix_web::HttpResponse;
use askama::Template;

use super::error::{AppError, blocking};
use super::layout::{Layout, State, render};
use crate::app::home::{HomeError, Todo, todos};
use crate::auth::CurrentUser;
use crate::db::users::UserRow;
use crate::policy::Permission;

/// A card on the home page linking to an area the role may open.
pub struct Card {
    pub title: &'static str,
    pub href: &'static str,
    pub text: String,
}

#[derive(Template)]
#[template(path = "home/index.html")]
struct HomePage {
    layout: Layout,
    role: String,
    role_description: String,
    todos: Vec<Todo>,
    cards: Vec<Card>,
}

impl From<HomeError> for AppError {
    fn from(e: HomeError) -> AppError {
        match e {
            HomeError::Db(e) => e.into(),
            HomeError::Consent(e) => e.into(),
            HomeError::Kpis(e) => e.into(),
        }
    }
}

#[derive(Template)]
#[template(path = "help/glossary.html")]
struct GlossaryPage {
    layout: Layout,
}

/// The glossary: the terms of the reports and dashboards in plain words.
pub async fn glossary(state: State, user: CurrentUser) -> HttpResponse {
    render(&GlossaryPage {
        layout: Layout::new(&state, Some(&user), "Glossary", "/glossary"),
    })
}

pub async fn index(state: State, user: CurrentUser) -> Result<HttpResponse, AppError> {
    let (db, policy, who) = (state.db.clone(), state.policy.clone(), user.clone());
    let todos = blocking(move || todos(&db, &policy, |p| who.can(p), crate::db::now())).await?;
    let db = state.db.clone();
    let (count_users, count_trail) = (
        user.can(Permission::UsersManage),
        user.can(Permission::TrailRead),
    );
    // Counted only for the cards the user sees. The trail is append-only and numbered from 1
    // without gaps (each entry chains to the one before), so its head's number is its length:
    // one row, where counting the entries walks the whole trail on every view.
    let (users, trail_entries) = blocking(move || {
        db.read(|c| {
            Ok((
                if count_users { UserRow::count(c)? } else { 0 },
                if count_trail {
                    crate::db::trail::head_seq(c)?
                } else {
                    0
                },
            ))
        })
    })
    .await?;
    let mut cards = Vec::new();
    if user.can(Permission::UsersManage) {
        cards.push(Card {
            title: "Users",
            href: "/admin/users",
            text: format!("{users} staff accounts. Create accounts, change roles, disable access."),
        });
    }
    if user.can(Permission::TrailRead) {
        cards.push(Card {
            title: "Trail",
            href: "/trail",
            text: format!(
                "{trail_entries} entries in the tamper-evident trail of changes and views of individual-level data."
            ),
        });
    }
    if user.can(Permission::PolicyRead) {
        cards.push(Card {
            title: "Policy",
            href: "/policy",
            text: format!(
                "Purposes, protected attributes, fairness thresholds and retention in force (version {}).",
                state.policy.short_version()
            ),
        });
    }
    if user.can(Permission::SegmentsRead) {
        cards.push(Card {
            title: "Segments",
            href: "/segments",
            text: "The published segmentation: who the segments are, what they are worth, whether they are viable, and their strategies.".into(),
        });
    }
    if user.can(Permission::SegmentsRun) {
        cards.push(Card {
            title: "Segmentation runs",
            href: "/segmentations",
            text: "Start a run on the customers who consented, follow it, compare runs.".into(),
        });
    }
    for (permission, title, href, text) in [
        (
            Permission::DsrManage,
            "Data requests",
            "/dsr",
            "Customers' access, erasure and objection requests, and the retention policy.",
        ),
        (
            Permission::ConsentRecord,
            "Consent",
            "/consent",
            "Who agreed to what, per purpose, and how it changed; record consent for a customer.",
        ),
        (
            Permission::CustomersImport,
            "Import",
            "/customers/import",
            "Load customers and transactions from CSV files.",
        ),
        (
            Permission::AuditsRead,
            "Audits",
            "/audits",
            "Fairness audits of every run: verdicts, overrides and sign-offs.",
        ),
        (
            Permission::KpiRead,
            "KPIs",
            "/kpi",
            "Key figures per period against their targets, drift and alerts.",
        ),
    ] {
        if user.can(permission) {
            cards.push(Card {
                title,
                href,
                text: text.into(),
            });
        }
    }
    cards.push(Card {
        title: "Your account",
        href: "/account",
        text: "Change your password; signs out your other sessions.".into(),
    });
    let role_description = state
        .policy
        .role(&user.role)
        .map(|r| r.description.clone())
        .unwrap_or_default();
    Ok(render(&HomePage {
        layout: Layout::new(&state, Some(&user), "Home", "/"),
        role: crate::format::label(&user.role),
        role_description,
        todos,
        cards,
    }))
}
