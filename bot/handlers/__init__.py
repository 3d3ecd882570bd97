"""The routers in match order; the fallback router goes last."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import admin, delivery, fallback, merchant, orders, payments, shop


def get_routers() -> list[Router]:
    routers = (payments, merchant, admin, delivery, shop, orders, fallback)
    return [m.create_router() for m in routers]
