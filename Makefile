# Short verbs; the README's two commands work without make.
PY ?= .venv/bin/python

install:
	python3 -m venv .venv && .venv/bin/pip install -q -e '.[dev]'

lint:
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

fmt:
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

test:
	$(PY) -m pytest -q

demo:
	$(PY) -m bot demo

bench:
	$(PY) bench/run.py

# gettext: extract the strings into the template, update every catalog (the bot loads .po
# files directly, so there is no compile step).
i18n-extract:
	$(PY) -m babel.messages.frontend extract -k _ -k __ -o bot/locales/messages.pot bot
	$(PY) -m babel.messages.frontend update -i bot/locales/messages.pot -d bot/locales -D messages

.PHONY: install lint fmt test demo bench i18n-extract
