"""JavaScript read from the page through BokehJS (what the browser really holds)."""

from __future__ import annotations

from typing import Any

DOC_READY = (
    "() => window.Bokeh && Bokeh.documents && Bokeh.documents.length > 0 && "
    "Bokeh.documents[0].all_models.size > 0"
)

# name -> number of rows (data sources) or 1 (other named models), across documents.
NAMED_MODELS = """() => {
  const out = {};
  for (const doc of Bokeh.documents) {
    for (const m of doc.all_models) {
      if (!m.name) { continue; }
      out[m.name] = (m.data && m.data.seq) ? m.data.seq.length : 1;
    }
  }
  return out;
}"""


def named(page: Any) -> dict[str, int]:
    return page.evaluate(NAMED_MODELS)


def plots(page: Any) -> list[str]:
    return sorted(k[len("plot:") :] for k in named(page) if k.startswith("plot:"))


def points(page: Any, run_id: str) -> int:
    return named(page).get(f"episodes:{run_id}", -1)


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_function(DOC_READY)
