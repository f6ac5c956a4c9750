"""The net state and its rules (Caffe's NetState and NetStateRule): phase, level and stages,
which layers a state admits and why the others are left out."""
from .. import caffe_pb2
from ..errors import NetspecError
from ..findings import Issue
from ..utils import did_you_mean

PHASES = {"TRAIN": caffe_pb2.TRAIN, "TEST": caffe_pb2.TEST}


def phase_value(phase):
    """caffe_pb2.TRAIN/TEST from an int or the words 'TRAIN'/'TEST' (any case)."""
    if isinstance(phase, str):
        try:
            return PHASES[phase.upper()]
        except KeyError:
            raise NetspecError(f"unknown phase '{phase}'", hint="use TRAIN or TEST") from None
    if phase not in PHASES.values():
        raise NetspecError(f"unknown phase {phase!r}", hint="use TRAIN or TEST")
    return phase


def phase_name(phase):
    return caffe_pb2.Phase.Name(phase)


def net_state(param, phase=None, stages=(), level=None):
    """The state the rules are judged against: the file's `state` as defaults, the caller's
    phase and level instead of them when given, the caller's stages added to the file's."""
    state = caffe_pb2.NetState()
    state.CopyFrom(param.state)
    if phase is not None:
        state.phase = phase_value(phase)
    if level is not None:
        state.level = level
    for s in stages:
        if s not in state.stage:
            state.stage.append(s)
    return state


def rule_text(rule):
    parts = []
    if rule.HasField("phase"):
        parts.append(f"phase: {phase_name(rule.phase)}")
    if rule.HasField("min_level"):
        parts.append(f"min_level: {rule.min_level}")
    if rule.HasField("max_level"):
        parts.append(f"max_level: {rule.max_level}")
    parts += [f'stage: "{s}"' for s in rule.stage]
    parts += [f'not_stage: "{s}"' for s in rule.not_stage]
    return "{ " + " ".join(parts) + " }"


def state_text(state):
    stages = ", ".join(state.stage) or "none"
    return f"phase {phase_name(state.phase)}, level {state.level}, stages: {stages}"


def rule_met(state, rule):
    """Caffe's StateMeetsRule: every condition the rule sets holds."""
    if rule.HasField("phase") and rule.phase != state.phase:
        return False
    if rule.HasField("min_level") and state.level < rule.min_level:
        return False
    if rule.HasField("max_level") and state.level > rule.max_level:
        return False
    if any(s not in state.stage for s in rule.stage):
        return False
    return not any(s in state.stage for s in rule.not_stage)


def exclusion(lp, state):
    """Why the state leaves this layer out, or None when it is kept (Caffe's FilterNet)."""
    kept = not lp.include
    for rule in lp.exclude:
        if rule_met(state, rule):
            return f"exclude {rule_text(rule)} matches the net state ({state_text(state)})"
    for rule in lp.include:
        if rule_met(state, rule):
            kept = True
    if not kept:
        rules = " or ".join(rule_text(r) for r in lp.include)
        return f"include {rules} does not match the net state ({state_text(state)})"
    return None


def unused_stages(param, stages, path):
    """A warning for asked-for stages that no include/exclude rule names: they change nothing,
    and are most likely misspelt."""
    used = sorted({s for lp in param.layer for rule in list(lp.include) + list(lp.exclude)
                   for s in list(rule.stage) + list(rule.not_stage)})
    unused = [s for s in dict.fromkeys(stages) if s not in used]
    if not unused:
        return None
    what = ", ".join(f"'{s}'{did_you_mean(s, used)}" for s in unused)
    hint = ("the net's stages are " + ", ".join(f"'{s}'" for s in used)) if used else \
        "this net has no stage rules: leave the stage out"
    named = "stage {} is" if len(unused) == 1 else "stages {} are"
    return Issue(named.format(what) + " named by no include or exclude rule of this net: it changes nothing",
                 file=path, hint=hint)
