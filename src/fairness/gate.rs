//! The publish gate: which audits let their run be published, and what a compliance officer's
//! override of a blocked audit must say.

use super::Verdict;

/// The shortest justification an override accepts, in characters.
pub const MIN_JUSTIFICATION_CHARS: usize = 20;

/// How an audited run stands at the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// The audit passed or warned: the run may be published as it is.
    Passes,
    /// The audit failed or was inconclusive, and a compliance officer overrode it.
    Overridden,
    /// The audit failed or was inconclusive, and nobody overrode it.
    Blocked,
}

impl Gate {
    /// The gate for an audit with `verdict`, overridden or not. An override of an audit that
    /// passes changes nothing (none can be recorded, see [`needs_override`]).
    pub fn decide(verdict: Verdict, overridden: bool) -> Gate {
        if passes_gate(verdict) {
            Gate::Passes
        } else if overridden {
            Gate::Overridden
        } else {
            Gate::Blocked
        }
    }

    /// Whether the run may be published.
    pub fn publishable(self) -> bool {
        !matches!(self, Gate::Blocked)
    }
}

/// Whether an audit lets its run be published without an override.
pub fn passes_gate(verdict: Verdict) -> bool {
    matches!(verdict, Verdict::Pass | Verdict::Warn)
}

/// Whether publishing a run audited with `verdict` takes an override.
pub fn needs_override(verdict: Verdict) -> bool {
    !passes_gate(verdict)
}

/// The justification trimmed, or its length in characters when it is too short to say in
/// writing why publishing is acceptable.
pub fn justification(text: &str) -> Result<&str, usize> {
    let text = text.trim();
    let chars = text.chars().count();
    if chars < MIN_JUSTIFICATION_CHARS {
        Err(chars)
    } else {
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pass_and_warn_pass_the_gate() {
        assert!(passes_gate(Verdict::Pass));
        assert!(passes_gate(Verdict::Warn));
        assert!(!passes_gate(Verdict::Fail));
        assert!(!passes_gate(Verdict::Inconclusive));
    }

    #[test]
    fn an_override_opens_the_gate_only_for_a_blocked_audit() {
        assert_eq!(Gate::decide(Verdict::Warn, false), Gate::Passes);
        assert_eq!(Gate::decide(Verdict::Pass, true), Gate::Passes);
        assert_eq!(Gate::decide(Verdict::Fail, true), Gate::Overridden);
        assert_eq!(Gate::decide(Verdict::Inconclusive, false), Gate::Blocked);
        assert!(Gate::Overridden.publishable());
        assert!(!Gate::Blocked.publishable());
    }

    #[test]
    fn a_justification_is_trimmed_and_counted_in_characters() {
        assert_eq!(justification("  too short  "), Err(9));
        assert_eq!(
            justification(" reviewed with legal, see ticket 42 "),
            Ok("reviewed with legal, see ticket 42")
        );
        assert_eq!(justification(&"é".repeat(19)), Err(19));
    }
}
