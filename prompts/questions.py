"""The instruction questions of release rows, per level and task: HIVAU-70k-style pools, one drawn per row."""

from __future__ import annotations

# Questions per level and task, drawn one per row from the row id (so a release is reproducible). HIVAU-70k
# draws from pools of about 24 caption and 10 judgement / description / analysis questions and asks events and
# videos the same ones (its `data_example.jsonl`); the first few of each pool keep HIVAU's wording, the rest are
# ours in its style. The first caption question is also the hivau captioner's prompt (tasks/text/caption.py).
CAPTION_QUESTIONS = (
    "Describe the main subjects and their actions in the video.",
    "Can you provide a brief description of the video?",
    "Can you describe the main action in this video briefly?",
    "What activities happen throughout the video?",
    "Provide a short overview of what happens in the video.",
    "What happens to the main subjects as the video progresses?",
    "Give a short and clear explanation of the video clip.",
    "Describe the sequence of events involving the main subjects in the video.",
    "What are the people in the video doing?",
    "Summarize the action shown in this clip in one or two sentences.",
    "Who appears in the video, and what do they do?",
    "Briefly describe the scene and the movements in it.",
    "What is going on in this clip?",
    "Describe what the people and objects in the video are doing.",
    "Give a brief account of what the camera captures in this clip.",
    "What do the main subjects do from the start to the end of the clip?",
    "Write a short caption for this video clip.",
    "Describe the interactions between the subjects in the video.",
    "Explain briefly what takes place in this footage.",
    "What can be seen happening in this short video?",
    "Describe the setting and the main activity of the clip.",
    "Narrate the events of this clip briefly.",
    "How do the subjects in the video behave?",
    "Give a concise description of the actions in this clip.",
)
JUDGEMENT_QUESTIONS = (
    "Point out the abnormal actions in the video.",
    "What anomalies can be identified in the video?",
    "Are there anomalies observed in the video clip?",
    "Is there an anomaly in this video? If so, what kind?",
    "Does anything unusual happen in this video?",
    "Does this video contain any abnormal event? Name it if so.",
    "Judge whether the video shows an anomaly, and of which kind.",
    "Is the behaviour in this video normal or abnormal?",
    "Can you detect any anomalous activity in this video?",
    "Which type of anomaly, if any, appears in the video?",
)
DESCRIPTION_QUESTIONS = (
    "Give a description of the detected anomaly events in this video.",
    "Could you provide a summary of the anomaly events in this video?",
    "Describe what happens in this video.",
    "Summarize the events of this video in order.",
    "Describe the anomalous event in detail, if there is one.",
    "What happens in this video, step by step?",
    "Give a detailed account of the events shown in the video.",
    "Describe the key events of this video and the people involved.",
    "Could you describe how the events in this video unfold?",
    "Provide a description of the main events captured in this video.",
)
ANALYSIS_QUESTIONS = (
    "Could you share your analysis of the anomalous event?",
    "What patterns did you observe that led to your conclusion about this event being an anomaly?",
    "Could you provide the reasons for considering this event as abnormal?",
    "Why is this event considered abnormal?",
    "Explain why the events in this video are anomalous or normal.",
    "What evidence in the video points to an anomaly?",
    "Analyze the cause and the consequences of the event in this video.",
    "What makes the behaviour in this video unusual, or why is it normal?",
    "Give the reasoning behind your judgement of this video.",
    "What details support the conclusion that this video is abnormal?",
)
# reasoning rows (hivau's own: HIVAU-70k has none): the answer is the item's chain, perception to conclusion
REASONING_QUESTIONS = (
    "Reason step by step about this video: what do you see, what does it mean, and is there an anomaly?",
    "Describe the scene and what happens over time, then explain whether this is an anomaly and why.",
    "Walk through the video: first what is seen, then what it means, then your conclusion about any anomaly.",
    "Think through this video from observation to judgement: is anything abnormal happening?",
    "What do you observe, how do you interpret it, and what do you conclude about anomalies in this video?",
    "Explain your reasoning, from the scene and the events in order to a judgement of normal or abnormal.",
    "Look at the video step by step and reason out whether it contains an anomaly, and of which kind.",
    "Give your chain of reasoning: perception of the scene and events, their cause and effect, and a conclusion.",
    "Reason from what happens in the video to whether it is anomalous, naming the kind of anomaly if any.",
    "First describe what the video shows over time, then judge whether it is normal or anomalous, and why.",
)
TEMPLATES: dict[tuple[str, str], tuple[str, ...]] = {
    ("clip", "caption"): CAPTION_QUESTIONS,
    **{(level, task): pool for level in ("event", "video")
       for task, pool in (("judgement", JUDGEMENT_QUESTIONS), ("description", DESCRIPTION_QUESTIONS),
                          ("analysis", ANALYSIS_QUESTIONS), ("reasoning", REASONING_QUESTIONS))},
}
