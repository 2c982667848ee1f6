"""The three dashboard themes as plain data: colours for the page, the cards and the plots."""

from __future__ import annotations

from dataclasses import dataclass

from traindash.config import THEMES


@dataclass(frozen=True)
class Theme:
    """Colours of one theme; ``panel_theme`` is Panel's own widget theme ('dark' or 'default')."""

    name: str
    panel_theme: str
    page_bg: str
    card_bg: str
    plot_bg: str
    fg: str
    muted: str
    grid: str
    accent: str
    good: str
    warn: str
    bad: str
    palette: tuple[str, ...]
    font: str = "Inter, 'Segoe UI', Helvetica, Arial, sans-serif"
    glow: bool = False

    def run_color(self, index: int) -> str:
        return self.palette[index % len(self.palette)]

    def level_color(self, level: str) -> str:
        return {"good": self.good, "warn": self.warn, "bad": self.bad}.get(level, self.muted)


_THEMES = {
    "cyberpunk": Theme(
        name="cyberpunk",
        panel_theme="dark",
        page_bg="#07070f",
        card_bg="#10101e",
        plot_bg="#0b0b18",
        fg="#d8f6ff",
        muted="#7a86a8",
        grid="#1c2140",
        accent="#00f0ff",
        good="#39ff14",
        warn="#f5e600",
        bad="#ff2a6d",
        palette=("#00f0ff", "#ff2fd6", "#f5e600", "#39ff14", "#ff8c00", "#b388ff"),
        font="'JetBrains Mono', 'Fira Code', Menlo, Consolas, monospace",
        glow=True,
    ),
    "dark": Theme(
        name="dark",
        panel_theme="dark",
        page_bg="#181a1f",
        card_bg="#22252b",
        plot_bg="#1d2025",
        fg="#e1e4e8",
        muted="#8b949e",
        grid="#30343b",
        accent="#58a6ff",
        good="#3fb950",
        warn="#d29922",
        bad="#f85149",
        palette=("#58a6ff", "#f778ba", "#e3b341", "#56d364", "#ff7b72", "#bc8cff"),
    ),
    "light": Theme(
        name="light",
        panel_theme="default",
        page_bg="#f4f6f9",
        card_bg="#ffffff",
        plot_bg="#ffffff",
        fg="#1f2328",
        muted="#656d76",
        grid="#e3e6ea",
        accent="#0969da",
        good="#1a7f37",
        warn="#b08800",
        bad="#cf222e",
        palette=("#0969da", "#bf3989", "#b08800", "#1a7f37", "#d1242f", "#8250df"),
    ),
}


def get_theme(name: str) -> Theme:
    """The theme called ``name``; a ValueError names the valid ones otherwise."""
    try:
        return _THEMES[name]
    except (KeyError, TypeError):
        raise ValueError(f"theme {name!r} is not one of {', '.join(THEMES)}") from None
