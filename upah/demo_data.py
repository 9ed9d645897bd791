"""The pilot's cast, from DOMAIN.md: three buyers, two intermediaries, twelve homeworkers in
four regions, six products at reported rates. Every phone number is a fictitious demo number."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from payments.adjustments import AdjustmentKind
from payments.rates import Commission, CommissionKind, Unit


@dataclass(frozen=True, slots=True)
class Buyer:
    code: str
    name: str
    deposit: int


@dataclass(frozen=True, slots=True)
class Intermediary:
    code: str
    name: str
    commission: Commission


@dataclass(frozen=True, slots=True)
class Homeworker:
    name: str
    region: str
    wallet: str
    language: str = "id"


@dataclass(frozen=True, slots=True)
class Product:
    """One work order: a product put out at its reported rate to some of the homeworkers."""

    reference: str
    buyer: str
    intermediary: str | None
    name: str
    rate: Decimal
    unit: Unit
    minutes_per_piece: Decimal
    region: str
    pieces: dict[int, int]
    """Homeworker index → pieces assigned (and, in the story, handed in)."""


BUYERS = (
    Buyer("sepatu", "PT Langkah Sepatu Tangerang", 30_000_000),
    Buyer("kok", "CV Kok Juara Malang", 10_000_000),
    Buyer("tekstil", "PT Tenun Deli Medan", 10_000_000),
)

INTERMEDIARIES = (
    Intermediary(
        "perantara",
        "Bu Yati, perantara Cilincing (Jakarta Utara)",
        Commission(kind=CommissionKind.PER_PIECE, rate=Decimal(100)),
    ),
    Intermediary(
        "bengkel",
        "Bengkel Rumahan Singosari (Malang)",
        Commission(kind=CommissionKind.PERCENT, rate=Decimal(10)),
    ),
)

JAKARTA, MALANG, MEDAN, YOGYAKARTA = "ID-JK", "ID-JI-KAB-MALANG", "ID-SU-KOTA-MEDAN", "ID-YO-KOTA-YOGYAKARTA"

HOMEWORKERS = (
    Homeworker("Siti Aminah", JAKARTA, "dana"),
    Homeworker("Nur Hasanah", JAKARTA, "ovo"),
    Homeworker("Rina Wati", JAKARTA, "gopay", language="en"),
    Homeworker("Dewi Lestari", JAKARTA, "shopeepay"),
    Homeworker("Sri Wahyuni", MALANG, "dana"),
    Homeworker("Yuliani", MALANG, "linkaja"),
    Homeworker("Endang Susilowati", MALANG, "ovo"),
    Homeworker("Rosmawati Siregar", MEDAN, "dana"),
    Homeworker("Lina Marpaung", MEDAN, "gopay"),
    Homeworker("Fitri Nasution", MEDAN, "ovo"),
    Homeworker("Wulan Sari", YOGYAKARTA, "shopeepay"),
    Homeworker("Tri Handayani", YOGYAKARTA, "dana"),
)

NEAR_LIMIT = 3
"""Dewi's wallet is unregistered and already holds Rp 1.900.000: her first payout bounces."""
NEAR_LIMIT_BALANCE = 1_900_000

PRODUCTS = (
    Product(
        "PO-SANDAL-01",
        "sepatu",
        "perantara",
        "Lem sol sandal",
        Decimal(300),
        Unit.PASANG,
        Decimal(4),
        JAKARTA,
        {0: 200, 1: 160, 2: 120},
    ),
    Product(
        "PO-BORDIR-02",
        "sepatu",
        None,
        "Bordir upper sepatu",
        Decimal(8000),
        Unit.PASANG,
        Decimal(45),
        JAKARTA,
        {3: 40, 0: 30, 1: 20, 2: 20},
    ),
    Product(
        "PO-KOK-03",
        "kok",
        "bengkel",
        "Bulu kok (shuttlecock)",
        Decimal(2000),
        Unit.SLOP,
        Decimal("2.5"),
        MALANG,
        {4: 600, 5: 480, 6: 360},
    ),
    Product(
        "PO-SELIMUT-04",
        "tekstil",
        None,
        "Selimut bayi",
        Decimal(1250),
        Unit.PIECE,
        Decimal(25),
        MEDAN,
        {7: 60, 8: 40},
    ),
    Product(
        "PO-SARUNG-05",
        "tekstil",
        None,
        "Sarung bantal",
        Decimal(400),
        Unit.PIECE,
        Decimal(6),
        MEDAN,
        {8: 150, 9: 200},
    ),
    Product(
        "PO-LUBANG-06",
        "tekstil",
        None,
        "Lubang kancing",
        Decimal(200),
        Unit.PIECE,
        Decimal(3),
        YOGYAKARTA,
        {10: 400, 11: 300},
    ),
)

REJECTED = ("PO-SANDAL-01", 0, "lem belepotan")
"""5% of Siti's first delivery of insoles comes back for smeared glue."""

ELECTRICITY_ALLOWANCE = 25_000
EID_BONUS = 100_000
ADJUSTMENTS = (
    (
        "kok",
        (4, 5, 6),
        AdjustmentKind.ALLOWANCE,
        ELECTRICITY_ALLOWANCE,
        "tunjangan listrik (electricity allowance)",
    ),
    ("tekstil", (7, 8, 9, 10, 11), AdjustmentKind.BONUS, EID_BONUS, "THR Idul Fitri (Eid bonus)"),
)
"""(buyer, homeworkers, kind, amount, memo): Malang's allowance and Medan's and Yogyakarta's Eid bonus."""
ADVANCE = ("sepatu", 1, 150_000)
"""Nur's kasbon, recovered from her later earnings, at most half of each."""

PIN = "2580"
