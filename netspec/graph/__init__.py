"""From a NetParameter to the graph the shape pass and the executor walk: the net state's
rules (state.py), the build with its implicit splits and wiring checks (build.py), and the
backward marks (backward.py)."""
from .backward import mark_backward, param_specs, plan_backward  # noqa: F401
from .build import Graph, Node, build_graph, load_source, split_blob_name, split_layer_name  # noqa: F401
from .state import exclusion, net_state, phase_name, phase_value, rule_met  # noqa: F401
from ..findings import Findings, Issue, by_name, node_issue  # noqa: F401
