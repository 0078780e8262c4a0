"""Reports and results tables, read back through a `Tracker` only (never the runner, never MLflow directly).

Internal: the CLI and `harness.api` call it; plugin authors use `harness.plugin`, and this package may change.
`aggregation` turns a suite's cell records into results (labels from the cells' run tags, mean ± std over
seeds); `statistics` says which differences are significant; `markdown` writes `reports/<suite>.md`; `plots`
draws its PNG figures; `views` adds the paper-shaped tables and figures a suite's `report:` block asks for.
"""
from .aggregation import RESULT_COLUMNS, results_csv, results_json, results_table, suite_labels
from .markdown import results_markdown, write_report, write_suite_report
from .statistics import holm, significance

__all__ = ["RESULT_COLUMNS", "holm", "results_csv", "results_json", "results_markdown", "results_table",
           "significance", "suite_labels", "write_report", "write_suite_report"]
