"""The routers in match order: staff routers before the customer's (staff get the staff
/orders), the fallback router last."""

from __future__ import annotations

from aiogram import Router

from bot.handlers import admin, fallback, lookup, merchant, orders, payments, shop


def get_routers() -> list[Router]:
    return [m.create_router() for m in (payments, merchant, admin, lookup, shop, orders, fallback)]
