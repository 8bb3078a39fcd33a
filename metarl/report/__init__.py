"""Results over seeds: interquartile means with stratified bootstrap confidence intervals, probability of
improvement, performance profiles and learning curves from run directories and results files
(``metarl report``). The statistics are in :mod:`metarl.report.stats`, the inputs in
:mod:`metarl.report.inputs`, pooling and its checks in :mod:`metarl.report.groups`."""

from metarl.report.groups import Group, group_runs
from metarl.report.inputs import RunResult, load
from metarl.report.summary import summarize
from metarl.report.write import Report, write_report

__all__ = ["Group", "Report", "RunResult", "group_runs", "load", "summarize", "write_report"]
