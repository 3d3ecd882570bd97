"""The routers in match order; the fallback router goes last."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import admin, fallback, merchant, orders, payments, reports, shop


def get_routers() -> list[Router]:
    return [m.create_router() for m in (payments, merchant, admin, reports, shop, orders, fallback)]
