"""matchbench's worked example of a third-party plugin package: one module and one entry point per kind.

    item_cooc          model    item-to-item cosine co-occurrence over the state's history
    hinge              loss     pairwise margin loss (contract pairwise), e.g. for the built-in `bpr`
    last_fraction      split    per user, the last share of their events (in time) is the test target
    average_precision  metric   `ap`: average precision at k, per query
    threshold          planner  per state, its top-K items whose scaled intensity clears a bar
    tsv_ratings        dataset  a tab-separated user/item/rating/timestamp file, checksum-verified
    jsonl_tracker      tracker  `jsonl`: one JSON line per cell record, artifacts copied beside it

Every module imports from `harness.plugin` only (and numpy / torch / pandas); the guide is docs/plugins.md.
"""
