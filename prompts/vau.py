"""The verifiable tasks' text format, VAU-R1's: the output a prompt asks for (`<think>..</think><answer>..</answer>`,
a span as `<glue>[start, end]</glue>`) and the SFT target that answers it. One owner for the release's SFT and GRPO
exports and for hivau's own policy training and scoring (`hivau.models.vau_policy`)."""

from __future__ import annotations

from typing import Optional

from hivau.schemas.records import VauTaskRow

# what goes inside <answer></answer> for each task
ANSWER_FORMS = {
    "choice": "the letter of the right option (A, B, C or D)",
    "classify": "the class name, or Normal",
    "detect": "yes or no",
    "grounding": "the time span in seconds as <glue>[start, end]</glue>, or <glue>[-1, -1]</glue> if nothing "
                 "abnormal happens",
}
THINK_FORMAT = "Think it through inside <think> </think>, then give your final answer inside <answer> </answer>: {form}."
ANSWER_FORMAT = "Give your final answer inside <answer> </answer>: {form}."


def rl_prompt(task: VauTaskRow, think: bool = True) -> str:
    """The task's question and the output format it asks for: VAU-R1's `<think>..</think><answer>..</answer>`
    (`think`), or the answer alone (an SFT row without a reasoning chain); grounding answers in `<glue>[s, e]</glue>`."""
    how = THINK_FORMAT if think else ANSWER_FORMAT
    return f"{task.question}\n\n{how.format(form=ANSWER_FORMS[task.task])}"


def answer_target(task: VauTaskRow) -> str:
    """The task's solution as VAU-R1 tags it: `<answer>B</answer>`, `<answer><glue>[12.5, 20.0]</glue></answer>`."""
    inner = f"<glue>{task.solution}</glue>" if task.task == "grounding" else task.solution
    return f"<answer>{inner}</answer>"


def sft_target(task: VauTaskRow, chain: Optional[str] = None) -> str:
    """The assistant turn: `<think>{chain}</think>` before the answer when a reasoning chain is given."""
    think = f"<think>{chain.strip()}</think>" if chain and chain.strip() else ""
    return think + answer_target(task)


