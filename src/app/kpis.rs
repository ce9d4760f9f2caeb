//! KPI use cases.
