"""TensorFlow's error messages made into one line a user can act on (every command line and
library module that reports an op error uses this)."""

from __future__ import annotations

import re

# TensorFlow's wrapping around the text of an op error: the name of the failing function in
# front ("{{function_node __wrapped__ReadFile_device_...}} "), the op behind (" [Op:ReadFile]",
# sometimes followed by " name: ...").
_FUNCTION_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\](?: name:.*)?$")


def op_error_text(message: str) -> str:
    """The line of a TensorFlow op error's message that says what went wrong, on one line.

    Under TF 2.21 an error raised while a graph runs reads

        Graph execution error:

        Detected at node assert_less/Assert/Assert defined at (most recent call last):
          File "...", line 7, in <module>       (or "<stack traces unavailable>")
        assertion failed: [label out of range: labels must be in 0..9] [Condition x < y ...] ...
        \t [[{{node assert_less/Assert/Assert}}]] [Op:__inference_...]

    and this returns "label out of range: labels must be in 0..9": for a failed assertion, its
    message (the first item in brackets); otherwise the first line that is not TensorFlow's
    framing (e.g. "Input to reshape is a tensor with 4096 values, but the requested shape has
    3136"), without the function and op names around it.
    """
    lines = message.splitlines()
    in_stack = False
    for line in lines:
        text = line.strip()
        if line.startswith("Detected at node "):
            in_stack = True  # the "defined at" stack follows: indented frames, blank lines
            continue
        if not text or text == "Graph execution error:" or text.startswith("[[{{node "):
            continue
        if in_stack and (line[0].isspace() or text == "<stack traces unavailable>"):
            continue
        text = _OP_SUFFIX.sub("", _FUNCTION_NODE.sub("", text))
        return _assertion_message(text) or text
    return message.strip().replace("\n", " ")


def _assertion_message(text: str) -> str | None:
    """The message of "assertion failed: [message] [data] ...": the first bracketed item
    (brackets inside it, as in "pixels in [0, 1]", are kept); None if `text` is something else
    or its first item is a value rather than words."""
    prefix = "assertion failed: ["
    if not text.startswith(prefix):
        return None
    depth = 1
    for i in range(len(prefix), len(text)):
        depth += {"[": 1, "]": -1}.get(text[i], 0)
        if depth == 0:
            item = text[len(prefix):i].strip()
            return item if re.search(r"[A-Za-z]{2}", item) else None
    return None
