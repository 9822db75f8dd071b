"""The regression gate: baseline store, statistics, verdicts and assertions."""
