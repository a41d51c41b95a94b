"""An Ollama Modelfile beside an exported GGUF: FROM, TEMPLATE in Ollama's Go-template syntax, stops.

Ollama renders prompts with Go's text/template, not Jinja, and no library translates one
into the other. The Modelfile's template is therefore read off the tokenizer's own Jinja
template by rendering it on marker conversations: what comes before each role's content,
what closes every message, the default system block the template adds when a conversation
has none, and the generation prompt. `render_like_ollama` assembles a prompt the way the Go
template does, and export refuses a template whose renderings it does not reproduce
(tests render the written TEMPLATE with Go itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunesmith.export.gguf_file import ExportError

_ROLES = ("system", "user", "assistant")
CHECKS = (  # conversations the assembled template must render exactly as the tokenizer does
    [{"role": "user", "content": "Hello there"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ],
    [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}],
)


@dataclass(frozen=True)
class ChatFormat:
    head: str  # once at the very start (a BOS written by the template itself)
    default_system: str  # added when the first message is not a system message
    prefix: dict[str, str]  # before each role's content
    suffix: str  # after every message's content
    generation: str  # the assistant's opening, after the last user message


def _render(tokenizer: Any, messages: list[dict[str, str]], generation: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)


def chat_format(tokenizer: Any) -> ChatFormat:
    """The template's pieces, read by rendering marker conversations."""
    marks = {"system": "\x01SYS\x01", "user": "\x01USR\x01", "assistant": "\x01AST\x01"}
    text = _render(tokenizer, [{"role": r, "content": marks[r]} for r in _ROLES], False)
    try:
        i_s, i_u, i_a = (text.index(marks[r]) for r in _ROLES)
    except ValueError:
        raise ExportError(
            "the chat template drops a system, user or assistant message; a Modelfile template "
            "cannot be derived from it"
        ) from None
    suffix = text[i_a + len(marks["assistant"]) :]
    between_su, between_ua = text[i_s + len(marks["system"]) : i_u], text[i_u + len(marks["user"]) : i_a]
    if not (between_su.startswith(suffix) and between_ua.startswith(suffix)):
        raise ExportError(
            "the chat template closes messages differently by role; a Modelfile template cannot be "
            "derived from it: write TEMPLATE by hand (https://github.com/ollama/ollama/blob/main/"
            "docs/template.md)"
        )
    bos = getattr(tokenizer, "bos_token", None) or ""
    # a BOS the template writes once (Llama 3), not a token that opens every message (ChatML's <|im_start|>)
    head = bos if bos and text.startswith(bos) and not between_su[len(suffix) :].startswith(bos) else ""
    prefix = {
        "system": text[len(head) : i_s],
        "user": between_su[len(suffix) :],
        "assistant": between_ua[len(suffix) :],
    }
    alone = _render(tokenizer, [{"role": "user", "content": marks["user"]}], False)
    start = alone.index(prefix["user"] + marks["user"]) if prefix["user"] + marks["user"] in alone else -1
    if start < len(head):
        raise ExportError(
            "the chat template renders a lone user message unlike a conversation; write the Modelfile TEMPLATE by hand"
        )
    default_system = alone[len(head) : start]
    generation = _render(tokenizer, [{"role": "user", "content": marks["user"]}], True)[len(alone) :]
    fmt = ChatFormat(head, default_system, prefix, suffix, generation)
    for messages in CHECKS:
        if render_like_ollama(fmt, messages) != _render(tokenizer, messages, True):
            raise ExportError(
                "the chat template does something a Modelfile template cannot follow (it changes "
                "with the conversation); write TEMPLATE by hand"
            )
    return fmt


def render_like_ollama(fmt: ChatFormat, messages: list[dict[str, str]]) -> str:
    """The prompt the Go template of `go_template(fmt)` renders for `messages`."""
    out = fmt.head + ("" if messages and messages[0]["role"] == "system" else fmt.default_system)
    for m in messages:
        out += fmt.prefix[m["role"]] + m["content"] + fmt.suffix
    return out + (fmt.generation if messages and messages[-1]["role"] != "assistant" else "")


def _literal(text: str) -> str:
    if "{{" in text or "}}" in text:
        raise ExportError("the chat template's text holds '{{' or '}}', which a Go template cannot hold literally")
    return text


def go_template(fmt: ChatFormat) -> str:
    """Ollama's TEMPLATE: `.Messages` with `.Role` and `.Content` (no whitespace trimming: the
    newlines are part of the format)."""
    p = {r: _literal(fmt.prefix[r]) for r in _ROLES}
    branches = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq $m.Role "{r}" }}}}{p[r]}' for i, r in enumerate(_ROLES)
    )
    return (
        f"{_literal(fmt.head)}"
        f'{{{{ if or (not .Messages) (ne (index .Messages 0).Role "system") }}}}'
        f"{_literal(fmt.default_system)}{{{{ end }}}}"
        f"{{{{ range $i, $m := .Messages }}}}{branches}{{{{ end }}}}{{{{ $m.Content }}}}{_literal(fmt.suffix)}"
        f'{{{{ if and (eq (len (slice $.Messages $i)) 1) (ne $m.Role "assistant") }}}}'
        f"{_literal(fmt.generation)}{{{{ end }}}}{{{{ end }}}}"
    )


def _quoted(text: str) -> str:
    if '"""' in text:
        raise ExportError('the template holds """, which a Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile(
    gguf_name: str, tokenizer: Any, *, system: str | None = None, temperature: float = 0.0, num_ctx: int = 2048
) -> str:
    """The Modelfile text: the GGUF beside it, the template, the trained system prompt (Ollama sends it as
    the first message when a request brings none), the end-of-turn stops and greedy sampling."""
    fmt = chat_format(tokenizer)
    stops = [s for s in dict.fromkeys([fmt.suffix.strip(), getattr(tokenizer, "eos_token", None)]) if s]
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(go_template(fmt))}"]
    if system:
        lines.append(f"SYSTEM {_quoted(system)}")
    lines += [f'PARAMETER stop "{s}"' for s in stops]
    lines += [f"PARAMETER temperature {temperature}", f"PARAMETER num_ctx {num_ctx}"]
    return "\n".join(lines) + "\n"


def write_modelfile(folder: Path, gguf_name: str, tokenizer: Any, **options: Any) -> Path:
    path = folder / "Modelfile"
    path.write_text(modelfile(gguf_name, tokenizer, **options), encoding="utf-8")
    return path
