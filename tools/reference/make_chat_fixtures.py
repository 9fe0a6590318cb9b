#!/usr/bin/env python3
"""Writes Tests/Fixtures/chat/: what Hugging Face transformers makes of qlora-train's training-data
forms (Sources/QLoRATrain/Data) with SmolLM2's tokenizer, and the text that real chat
templates (SmolLM2 / Qwen2 ChatML, Llama-2, Llama-3) render.

Run (a few seconds; needs out/smollm2-135m-nf4, written by `quantize` from SmolLM2-135M-Instruct):
    /work/refvenv/bin/python tools/reference/make_chat_fixtures.py
Pinned: transformers 5.23.0, tokenizers 0.23.x (checked below). `swift test` never runs Python.

Writes
  smollm2/                       a model directory for the tests: tokenizer_config.json copied from
                                 out/smollm2-135m-nf4 (ChatML template with a default system prompt,
                                 eos_token <|im_end|>) and tokenizer.json, a symlink to
                                 ../../tokenizer/smollm2.tokenizer.json (checked here to be the same
                                 tokenizer as the model's)
  cases.json
    templates          name -> Jinja chat template (SmolLM2's own, Qwen2's, a Qwen2.5-style one
                       written with "\\n" escapes, Llama-2's and Llama-3's well-known templates, and
                       an unknown one) and default_systems: name -> the system prompt a ChatML
                       template inserts
    text               {"text"} rows: tokenizer(text).input_ids + [eos]; labels = tokens
    prompt_completion  tokenizer(prompt).input_ids + tokenizer(completion, add_special_tokens=False)
                       + [eos]; labels -100 over the prompt
    chat               SmolLM2 conversations: rendered = apply_chat_template(tokenize=False),
                       tokens = tokenizer(rendered, add_special_tokens=False).input_ids, labels =
                       the token where it overlaps an assistant span (below), else -100
    render             per template: messages -> segments [[text, trainable], ...] whose texts join
                       to the rendered conversation and the text with add_generation_prompt=True,
                       or "error" where the template raises

Assistant spans (the trained text: the assistant's content and its end-of-turn token) come from
transformers' {% generation %} tracker run on a tagged copy of each template, checked to render
exactly the text of the real template. A token overlaps a span when its character offsets do
(offsets checked to cover the text without gaps), so a token that straddles the header/content
boundary (SmolLM2 merges "\\n" + "\\n\\n" into one token) is trained.
"""

import json
import os
import shutil
import sys

from refstack import INSTALL_PINNED, check_versions, quiet_reference_stack
from fixture_writer import ROOT

PINNED = {"transformers": "5.23.0", "tokenizers": "0.23.*"}
MODEL = os.path.join(ROOT, "out", "smollm2-135m-nf4")
TOKENIZER_FIXTURE = os.path.join(ROOT, "Tests", "Fixtures", "tokenizer", "smollm2.tokenizer.json")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "chat")

# meta-llama/Llama-2-7b-chat-hf tokenizer_config.json chat_template.
LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}"
    "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}"
    "{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}"
)
LLAMA2_ASSISTANT = "{{ ' '  + content.strip() + ' ' + eos_token }}"

# meta-llama/Meta-Llama-3-8B-Instruct tokenizer_config.json chat_template.
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
LLAMA3_TAGGED = (
    "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] | trim + '<|eot_id|>' }}{% endif %}{% endfor %}"
)

# Qwen/Qwen2-7B-Instruct tokenizer_config.json chat_template.
QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Qwen2.5-Instruct's template without its tool branches; like the original it writes newlines as
# Jinja "\n" escapes.
QWEN25 = (
    "{%- if messages[0]['role'] == 'system' %}\n"
    "    {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}\n"
    "{%- else %}\n"
    "    {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if (message.role == \"user\") or (message.role == \"system\" and not loop.first) or (message.role == \"assistant\") %}\n"
    "        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)
# Any ChatML template with an optional default system prompt, the assistant turns tagged.
CHATML_TAGGED = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' and default_system %}"
    "{{ '<|im_start|>system\n' + default_system + '<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}{% endfor %}"
)
# A Gemma-style template: none of the markers the detection knows.
UNKNOWN = "{% for message in messages %}{{ '<start_of_turn>' + message['role'] + '\n' + message['content'] + '<end_of_turn>\n' }}{% endfor %}"


def m(*pairs):
    return [{"role": role, "content": content} for role, content in pairs]


CHATS = [
    m(("user", "What is 2+2?"), ("assistant", "4.")),
    m(("system", "You are terse."), ("user", "Name a colour."), ("assistant", "Blue."),
      ("user", "Another?"), ("assistant", "Green.")),
    m(("user", "Übersetze: 猫 🐱"), ("assistant", "Katze 🐈 — «chat» en français; e\u0301 ﷽ 한국어")),
    m(("user", "leading newlines"), ("assistant", "\n\nHello"), ("user", "one newline"), ("assistant", "\nHi")),
    m(("user", " spaces "), ("assistant", "  two spaces"), ("user", "space"), ("assistant", " one")),
    m(("user", "mixed whitespace"), ("assistant", "\t\nx"), ("user", "ws"), ("assistant", "\n \nend  \n")),
    m(("assistant", "I speak first."), ("assistant", ""), ("user", "trailing user turn")),
    m(("user", "code"), ("assistant", "```python\nprint('x')\n```\n"), ("system", "late system"), ("user", "ok"),
      ("assistant", "12345 67")),
]

RENDERS = {
    "llama2": [
        m(("user", "Hello"), ("assistant", "Hi there")),
        m(("system", "Be brief."), ("user", "  What is up?  "), ("assistant", " \nNothing much.\n "),
          ("user", "Bye"), ("assistant", "Bye!")),
        m(("system", "\u3000sys\x1c"), ("user", ""), ("assistant", "\x1cok\u00a0")),
        m(("user", "a"), ("user", "b"), ("assistant", "c")),
        m(("system", "s"), ("assistant", "c")),
    ],
    "llama3": [
        m(("user", "Hello"), ("assistant", "Hi there")),
        m(("system", " Be brief.\n"), ("user", "\n\nWhat is up?"), ("assistant", "  Nothing.  "),
          ("user", "Bye"), ("assistant", "Bye! 👋")),
        m(("assistant", "\x1f\u2028first\u3000"), ("user", "x")),
    ],
    "qwen2": [
        m(("user", "Hello"), ("assistant", "Hi there")),
        m(("system", "Custom."), ("user", " x "), ("assistant", "\ny\n")),
    ],
    "qwen2.5": [
        m(("user", "Hello"), ("assistant", "Hi there")),
        m(("system", "Custom."), ("user", " x "), ("assistant", "\ny\n"), ("system", "late"), ("user", "z"),
          ("assistant", "w")),
    ],
    "smollm2": [
        m(("user", "Hello"), ("assistant", "Hi there")),
    ],
}

TEXTS = ["Hello world", " leading space and trailing  ", "unicode: 猫 🐈 e\u0301", "line1\nline2\n\n",
         "a literal <|im_start|> token", "The quick brown fox jumps over the lazy dog. " * 3]
PROMPT_COMPLETIONS = [("Q: What is 2+2?\nA:", " 4"), ("Translate to French: cat =>", " chat\n"),
                      ("", "only a completion"), ("unicode ⟹", "✓ done")]


def segments(rendered, spans):
    """[[text, trainable], ...] of `rendered` cut at the generation spans, without empty pieces."""
    out, at = [], 0
    for start, end in spans:
        if start > at:
            out.append([rendered[at:start], False])
        out.append([rendered[start:end], True])
        at = end
    if at < len(rendered):
        out.append([rendered[at:], False])
    return out


def main():
    versions = check_versions(PINNED, hint=INSTALL_PINNED)
    quiet_reference_stack()
    from jinja2.exceptions import TemplateError
    from transformers import AutoTokenizer
    from transformers.utils.chat_template_utils import render_jinja_template

    with open(os.path.join(MODEL, "tokenizer.json"), encoding="utf-8") as f, \
            open(TOKENIZER_FIXTURE, encoding="utf-8") as g:
        assert json.load(f) == json.load(g), "the tokenizer fixture differs from the model's tokenizer.json"
    tok = AutoTokenizer.from_pretrained(MODEL)
    with open(os.path.join(MODEL, "tokenizer_config.json"), encoding="utf-8") as f:
        smollm2 = json.load(f)["chat_template"]
    eos = tok.eos_token_id
    assert tok.eos_token == "<|im_end|>" and eos == 2

    templates = {"smollm2": smollm2, "qwen2": QWEN2, "qwen2.5": QWEN25, "llama2": LLAMA2, "llama3": LLAMA3,
                 "unknown": UNKNOWN}
    default_systems = {"smollm2": "You are a helpful AI assistant named SmolLM, trained by Hugging Face",
                       "qwen2": "You are a helpful assistant.",
                       "qwen2.5": "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."}
    assert LLAMA2_ASSISTANT in LLAMA2
    tagged = {"llama2": LLAMA2.replace(LLAMA2_ASSISTANT, "{% generation %}" + LLAMA2_ASSISTANT + "{% endgeneration %}"),
              "llama3": LLAMA3_TAGGED, "qwen2": CHATML_TAGGED, "qwen2.5": CHATML_TAGGED, "smollm2": CHATML_TAGGED}
    special = {"llama2": {"bos_token": "<s>", "eos_token": "</s>"},
               "llama3": {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}}

    def render(name, messages):
        """(rendered text, generation spans), checking the tagged copy against the real template."""
        kwargs = special.get(name, {"default_system": default_systems.get(name)})
        real, _ = render_jinja_template([messages], chat_template=templates[name], **kwargs)
        text, spans = render_jinja_template([messages], chat_template=tagged[name],
                                            return_assistant_tokens_mask=True, **kwargs)
        assert text[0] == real[0], (name, messages, text[0], real[0])
        return real[0], spans[0]

    render_cases = []
    for name, chats in RENDERS.items():
        for messages in chats:
            try:
                rendered, spans = render(name, messages)
                prompted, _ = render_jinja_template([messages], chat_template=templates[name], add_generation_prompt=True,
                                                    **special.get(name, {}))
                render_cases.append({"template": name, "messages": messages, "segments": segments(rendered, spans),
                                     "with_generation_prompt": prompted[0]})
            except TemplateError as error:
                render_cases.append({"template": name, "messages": messages, "error": str(error)})

    chat_cases = []
    for messages in CHATS:
        rendered, spans = render("smollm2", messages)
        assert rendered == tok.apply_chat_template(messages, tokenize=False)
        enc = tok(rendered, add_special_tokens=False, return_offsets_mapping=True)
        ids, offsets = enc["input_ids"], enc["offset_mapping"]
        assert ids == tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        at = 0
        for start, end in offsets:
            assert start <= at <= end, ("offsets leave a gap", messages, offsets)
            at = end
        assert at == len(rendered)
        labels = [i if any(start < e and end > s for s, e in spans) else -100 for i, (start, end) in zip(ids, offsets)]
        chat_cases.append({"messages": messages, "rendered": rendered, "tokens": ids, "labels": labels})

    text_cases = []
    for text in TEXTS:
        ids = tok(text)["input_ids"] + [eos]
        text_cases.append({"text": text, "tokens": ids, "labels": ids})
    pc_cases = []
    for prompt, completion in PROMPT_COMPLETIONS:
        p = tok(prompt)["input_ids"]
        c = tok(completion, add_special_tokens=False)["input_ids"] + [eos]
        pc_cases.append({"prompt": prompt, "completion": completion, "tokens": p + c, "labels": [-100] * len(p) + c})

    model_dir = os.path.join(OUT, "smollm2")
    os.makedirs(model_dir, exist_ok=True)
    shutil.copyfile(os.path.join(MODEL, "tokenizer_config.json"), os.path.join(model_dir, "tokenizer_config.json"))
    link = os.path.join(model_dir, "tokenizer.json")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(os.path.relpath(TOKENIZER_FIXTURE, model_dir), link)
    meta = {"versions": versions, "script": "tools/reference/make_chat_fixtures.py"}
    cases = {"meta": meta, "templates": templates, "default_systems": default_systems, "text": text_cases,
             "prompt_completion": pc_cases, "chat": chat_cases, "render": render_cases}
    path = os.path.join(OUT, "cases.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"{path}: {os.path.getsize(path)} bytes; {len(chat_cases)} chats, {len(render_cases)} renders")


if __name__ == "__main__":
    sys.exit(main())
