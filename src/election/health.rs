//! A resource's health-check results in a row → whether this node may be
//! master (pure; the runner runs the checks and feeds the results in).
//!
//! The first result decides at once (a node starting up was never known
//! good or bad, and waiting `rise` runs would delay every start); after
//! that, `fall` failures in a row make an eligible node ineligible and
//! `rise` successes in a row make it eligible again.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    fall: u32,
    rise: u32,
    /// None until the first result.
    eligible: Option<bool>,
    ok_in_row: u32,
    failed_in_row: u32,
}

impl Health {
    pub fn new(fall: u32, rise: u32) -> Self {
        Health {
            fall: fall.max(1),
            rise: rise.max(1),
            eligible: None,
            ok_in_row: 0,
            failed_in_row: 0,
        }
    }

    /// A reload replaced the check: the verdict so far stands until the new
    /// check overturns it with `fall` failures or `rise` successes in a row
    /// (a master does not give up for a single failure of an edited
    /// check). `eligible`: the verdict so far; None if there was none.
    pub fn carried_over(mut self, eligible: Option<bool>) -> Self {
        self.eligible = eligible;
        self
    }

    /// A reload changed `fall` or `rise`: the runs in a row so far count.
    pub fn set_limits(&mut self, fall: u32, rise: u32) {
        self.fall = fall.max(1);
        self.rise = rise.max(1);
    }

    pub fn eligible(&self) -> Option<bool> {
        self.eligible
    }

    /// Successes in a row so far (what made the node eligible: `rise` of
    /// them, or one when the first result decided).
    pub fn passed_in_row(&self) -> u32 {
        self.ok_in_row
    }

    /// For status: `pending` (no result yet), `ok` (eligible), `failing`.
    pub fn as_str(&self) -> &'static str {
        match self.eligible {
            None => "pending",
            Some(true) => "ok",
            Some(false) => "failing",
        }
    }

    /// Records one run; returns the new eligibility when it changed.
    pub fn record(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.ok_in_row = self.ok_in_row.saturating_add(1);
            self.failed_in_row = 0;
        } else {
            self.failed_in_row = self.failed_in_row.saturating_add(1);
            self.ok_in_row = 0;
        }
        let next = match self.eligible {
            None => ok,
            Some(true) => self.failed_in_row < self.fall,
            Some(false) => self.ok_in_row >= self.rise,
        };
        (self.eligible != Some(next)).then(|| {
            self.eligible = Some(next);
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(h: &mut Health, runs: &str) -> Vec<Option<bool>> {
        runs.chars().map(|c| h.record(c == '+')).collect()
    }

    #[test]
    fn the_first_result_decides() {
        let mut h = Health::new(3, 2);
        assert_eq!(h.as_str(), "pending");
        assert_eq!(h.record(true), Some(true));
        let mut h = Health::new(3, 2);
        assert_eq!(h.record(false), Some(false));
        assert_eq!(h.as_str(), "failing");
    }

    #[test]
    fn fall_failures_in_a_row_then_rise_successes_in_a_row() {
        let mut h = Health::new(3, 2);
        h.record(true);
        // Two failures, a success: the count starts over.
        assert_eq!(feed(&mut h, "--+--"), [None; 5]);
        assert_eq!(h.record(false), Some(false), "third in a row");
        assert_eq!(feed(&mut h, "+-+"), [None; 3], "no two in a row");
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.as_str(), "ok");
    }

    /// What the runner logs as "passed N time(s) in a row" (issue #19,
    /// item 8: it logged `rise` where the first result decided).
    #[test]
    fn passed_in_row_counts_the_runs_that_made_it_eligible() {
        let mut h = Health::new(3, 5);
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.passed_in_row(), 1, "the first result decides");
        let mut h = Health::new(1, 2);
        assert_eq!(feed(&mut h, "-+"), [Some(false), None]);
        assert_eq!(h.record(true), Some(true));
        assert_eq!(h.passed_in_row(), 2);
    }

    #[test]
    fn flapping_never_reaches_fall_above_one() {
        let mut h = Health::new(2, 2);
        h.record(true);
        assert!(feed(&mut h, &"-+".repeat(50)).iter().all(Option::is_none));
    }

    #[test]
    fn a_carried_over_verdict_needs_fall_failures() {
        let mut h = Health::new(2, 2).carried_over(Some(true));
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), Some(false));
    }

    #[test]
    fn new_limits_apply_to_the_runs_so_far() {
        let mut h = Health::new(3, 2);
        h.record(true);
        feed(&mut h, "--");
        h.set_limits(2, 2);
        assert_eq!(h.record(false), Some(false));
    }
}
