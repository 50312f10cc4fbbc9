"""The gradio app of ``afford serve``: one tab per task plus transfer, on the Python API.

Tabs (element ids in brackets, used by the browser test):

* Grounding: image [``ground-image``] + action -> heatmap overlay [``ground-overlay``] + JSON;
* Correspondence: images A and B + function, discovery or typed points -> the matches drawn
  side by side [``corr-overlay``] + JSON;
* Transfer: a source image + typed points, or the grounding heatmap of an action, -> each
  target image with the transferred points / heatmap [``transfer-gallery``] + JSON.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

from afford.api import Corresponder, Grounder
from afford.errors import AffordError
from afford.serve import handlers

TITLE = "afford: what objects are for"
INTRO = (
    "Affordance grounding (*where would you hold / cut with / pour with this?*) and dense "
    "functional correspondence between objects, with the models `afford serve` was started "
    "with ({models}). Images are processed on this machine; nothing is stored."
)


def _shown(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Show an AffordError in the page (gradio's error toast) instead of failing silently."""
    import gradio as gr

    @functools.wraps(fn)
    def run(*args: Any) -> Any:
        try:
            return fn(*args)
        except AffordError as exc:
            raise gr.Error(str(exc)) from None

    return run


def build_app(grounder: Grounder, corresponder: Corresponder, models: str = "") -> Any:
    """The gr.Blocks app (not launched)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio as gr

    actions, functions = grounder.actions, corresponder.functions
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"# {TITLE}\n\n" + INTRO.format(models=models or "demo models"))
        with gr.Tab("Grounding", id="grounding"):
            with gr.Row():
                with gr.Column():
                    g_img = gr.Image(type="numpy", label="image", elem_id="ground-image")
                    g_act = gr.Dropdown(actions, value=actions[0], label="action")
                    g_run = gr.Button("Ground", variant="primary", elem_id="ground-run")
                with gr.Column():
                    g_out = gr.Image(
                        type="numpy", label="heatmap", interactive=False, elem_id="ground-overlay"
                    )
                    g_json = gr.JSON(label="result")
            g_run.click(
                _shown(functools.partial(handlers.ground, grounder)),
                [g_img, g_act],
                [g_out, g_json],
                api_name="ground",
            )
        with gr.Tab("Correspondence", id="correspondence"):
            with gr.Row():
                c_a = gr.Image(type="numpy", label="image A", elem_id="corr-image-a")
                c_b = gr.Image(type="numpy", label="image B", elem_id="corr-image-b")
            with gr.Row():
                c_fn = gr.Dropdown(functions, value=functions[0], label="function")
                c_mode = gr.Radio(list(handlers.MODES), value="discover", label="mode")
                c_k = gr.Slider(1, 100, value=20, step=1, label="matches (discover)")
            c_pts = gr.Textbox(
                label="points of image A (mode 'points'): row,col; row,col",
                placeholder="40,52; 60,70",
            )
            c_run = gr.Button("Match", variant="primary", elem_id="corr-run")
            c_out = gr.Image(
                type="numpy", label="matches", interactive=False, elem_id="corr-overlay"
            )
            c_json = gr.JSON(label="matches")
            c_run.click(
                _shown(functools.partial(handlers.correspond, corresponder)),
                [c_a, c_b, c_fn, c_mode, c_pts, c_k],
                [c_out, c_json],
                api_name="correspond",
            )
        with gr.Tab("Transfer", id="transfer"):
            with gr.Row():
                with gr.Column():
                    t_src = gr.Image(type="numpy", label="source image", elem_id="transfer-source")
                    t_tgt = gr.File(
                        file_count="multiple",
                        file_types=["image"],
                        label="target images",
                        elem_id="transfer-targets",
                    )
                with gr.Column():
                    t_fn = gr.Dropdown(functions, value=functions[0], label="function")
                    t_pts = gr.Textbox(
                        label="source points row,col; row,col (blank: use the heatmap below)",
                        placeholder="40,52",
                    )
                    t_act = gr.Dropdown(
                        actions, value=actions[0], label="grounding action (when no points)"
                    )
                    t_run = gr.Button("Transfer", variant="primary", elem_id="transfer-run")
            t_out = gr.Gallery(label="targets", elem_id="transfer-gallery")
            t_json = gr.JSON(label="transfer")
            t_run.click(
                _shown(functools.partial(handlers.transfer_tab, corresponder, grounder)),
                [t_src, t_tgt, t_fn, t_pts, t_act],
                [t_out, t_json],
                api_name="transfer",
            )
    return app


def load_models(
    grounding: str = "demo", correspondence: str = "demo", device: str = "auto"
) -> tuple[Grounder, Corresponder]:
    """The two API models (``"demo"`` = the shipped demo models)."""
    return (
        Grounder.from_checkpoint(grounding, device=device),
        Corresponder.from_checkpoint(correspondence, device=device),
    )


def serve(
    host: str = "127.0.0.1",
    port: int = 7860,
    grounding: str = "demo",
    correspondence: str = "demo",
    device: str = "auto",
    block: bool = True,
) -> Any:
    """Load the models, build the app and launch it on ``host:port`` (blocks unless
    ``block=False``; returns the app)."""
    g, c = load_models(grounding, correspondence, device)
    app = build_app(g, c, models=f"grounding: {grounding}, correspondence: {correspondence}")
    app.queue(default_concurrency_limit=1)
    app.launch(
        server_name=host,
        server_port=int(port),
        prevent_thread_lock=not block,
        show_error=True,
        quiet=False,
        inbrowser=False,
    )
    return app
