"""An evaluation rendered for people: PNG pictures (plots) and the HTML report (html)."""
