"""A generated demo program in the input contract's formats, deterministic by seed.

`generate_demo(out)` writes clusters.xlsx, institutions.csv, exchanges.csv, partnerships.csv,
rates.csv (issue 13: exchange rates against EUR),
participants.csv, events.csv and responses.csv into `out`, plus truth.json: the effects the
simulation built in, so that tests can check that the statistics recover them, and the bad
rows it planted on purpose, so that tests can check that the loader rejects exactly those.

Why simulate rather than ship a sample: the dashboard needs realistic data on a fresh clone, the
statistics need a known truth, and benchmarks need the same program at 100x the size. Everything
is vectorised with numpy and written with pyarrow; participants, events and responses are made
in chunks of `CHUNK` participants so that 1,000,000 participants (~50M events) fit in ~2 GB.

The model, per instrument scale (all on the instrument's raw scale, e.g. 1..5):

- latent baseline  theta0_i = mu + latent_sd * (sqrt(rho) * g_i + sqrt(1 - rho) * z_is)
- latent gain      delta_i = intercept[modality] + dose_slope * min(n_events_i, DOSE_CAP) / 10
                             + N(0, gain_sd)
                   (comparison group: comparison_gain + N(0, gain_sd / 2))
- latent by wave   pre = theta0, post = theta0 + delta, followup = theta0 + retention * delta,
                   each plus N(0, occasion_sd)
- item answer      clip(round(latent + item_offset_j + N(0, item_noise_sd)), min, max), written as
                   min + max - answer for reverse-coded items; ~3 % of answers left empty.
- small cells      one exchange keeps 7 participants and only 6 comparison people of physical
                   exchanges answer the follow-up, so that the small-cell rule (k = 10) shows
                   (`_plant_small_cells`, truth.json "small_cells").
- light touch      a share of active participants (LIGHT_TOUCH_SHARE, by cluster and term for
                   the scale plant) stop after their first 1..LIGHT_TOUCH_MAX_EVENTS events, so
                   that depth (the share reaching a meaningful dose) varies; one cluster scales
                   up without scaling in and one scales in (`SCALE_PLANT`, truth.json "scale").
"""

from __future__ import annotations

import io
import json
import math
import re
import unicodedata
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Self

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from scipy.special import ndtr

import surveys
from etl.languages import language_code

__all__ = ["AS_OF", "CHUNK", "DOSE_CAP", "MODALITIES", "WAVES", "generate_demo"]

AS_OF = date(2026, 11, 15)  # the program's "today": partnerships still running then are censored
CHUNK = 100_000  # participants per generated chunk; fixed so that output does not depend on it
DOSE_CAP = 150  # events beyond this add no further gain
WAVES = ("pre", "post", "followup")
MODALITIES = ("virtual", "blended", "physical")
GROUPS = (*MODALITIES, "comparison")
MEAN_EVENTS = 55.0  # mean events per active participant (heavy-tailed around it)
MISSING_ITEM_SHARE = 0.03
TARGET_ALPHA = 0.78  # design value of Cronbach's alpha at the pre wave
_EPOCH = date(1970, 1, 1)
_FIRST_MONDAY = date(2023, 9, 4)  # earliest exchange start (a Monday)
_START_WEEKS = 117  # exchanges start on one of the 117 Mondays from _FIRST_MONDAY


# ---------------------------------------------------------------------------------------------
# Reference data: countries, clusters, purposes. Names are common ones, written in the country's
# script where it is not Latin ("native|latin"); "_" stands for a space inside a name. First
# names alternate female, male (an even count per country) so that names match the gender column;
# surnames are ones that do not change with gender.
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Country:
    alpha3: str
    cities: tuple[tuple[str, str], ...]  # (city, IANA zone): multi-zone countries list several
    income: str
    language: str
    currency: str
    school: str  # name template with {city}
    university: str
    first: str
    last: str
    family_first: bool = False
    native_share: float = 1.0  # share of people whose name is written in the native script
    native_sep: str = " "
    weight: float = 1.0


COUNTRIES: tuple[Country, ...] = (
    Country("DEU", (("Berlin", "Europe/Berlin"), ("Hamburg", "Europe/Berlin"),
                    ("München", "Europe/Berlin"), ("Köln", "Europe/Berlin")),
            "high", "German", "EUR", "Gymnasium {city}", "Universität {city}",
            "Lena Jonas Mia Lukas Emma Leon Hannah Felix Sophie Maximilian",
            "Müller Schmidt Schneider Fischer Weber Becker Wagner Hoffmann", weight=2.0),
    Country("FRA", (("Paris", "Europe/Paris"), ("Lyon", "Europe/Paris"),
                    ("Marseille", "Europe/Paris"), ("Lille", "Europe/Paris")),
            "high", "French", "EUR", "Lycée de {city}", "Université de {city}",
            "Camille Louis Léa Gabriel Chloé Hugo Manon Théo Inès Jules",
            "Martin Bernard Dubois Lefèvre Moreau Girard Fournier Mercier", weight=1.8),
    Country("ESP", (("Madrid", "Europe/Madrid"), ("Barcelona", "Europe/Madrid"),
                    ("Valencia", "Europe/Madrid"), ("Las Palmas", "Atlantic/Canary")),
            "high", "Spanish", "EUR", "IES {city}", "Universidad de {city}",
            "Lucía Hugo Martina Mateo Sofía Pablo Alba Álvaro Carmen Javier",
            "García Fernández González Rodríguez López Martínez Sánchez Pérez", weight=1.6),
    Country("ITA", (("Roma", "Europe/Rome"), ("Milano", "Europe/Rome"), ("Napoli", "Europe/Rome"),
                    ("Torino", "Europe/Rome")),
            "high", "Italian", "EUR", "Liceo di {city}", "Università di {city}",
            "Giulia Lorenzo Sofia Francesco Aurora Alessandro Chiara Matteo Giorgia Leonardo",
            "Rossi Russo Ferrari Esposito Bianchi Romano Colombo Ricci", weight=1.4),
    Country("POL", (("Warszawa", "Europe/Warsaw"), ("Kraków", "Europe/Warsaw"),
                    ("Gdańsk", "Europe/Warsaw"), ("Wrocław", "Europe/Warsaw")),
            "high", "Polish", "PLN", "Liceum Ogólnokształcące {city}", "Uniwersytet {city}",
            "Zofia Jakub Maja Antoni Zuzanna Jan Łucja Szymon Wiktoria Michał",
            "Nowak Wójcik Kowalczyk Mazur Krawczyk Kaczmarek Pawlak Dudek"),
    Country("NLD", (("Amsterdam", "Europe/Amsterdam"), ("Rotterdam", "Europe/Amsterdam"),
                    ("Utrecht", "Europe/Amsterdam")),
            "high", "Dutch", "EUR", "Lyceum {city}", "Universiteit {city}",
            "Emma Daan Julia Sem Tess Lucas Sophie Finn Noor Levi",
            "de_Jong Jansen de_Vries van_den_Berg Bakker Visser Smit Meijer"),
    Country("SWE", (("Stockholm", "Europe/Stockholm"), ("Göteborg", "Europe/Stockholm"),
                    ("Malmö", "Europe/Stockholm")),
            "high", "Swedish", "SEK", "{city} gymnasium", "{city} universitet",
            "Alice Oscar Maja William Elsa Hugo Astrid Lucas Saga Liam",
            "Andersson Johansson Karlsson Nilsson Eriksson Larsson Öberg Åkesson"),
    Country("FIN", (("Helsinki", "Europe/Helsinki"), ("Tampere", "Europe/Helsinki"),
                    ("Oulu", "Europe/Helsinki")),
            "high", "Finnish", "EUR", "{city}n lukio", "{city}n yliopisto",
            "Aino Eetu Ella Onni Helmi Väinö Sofia Leo Iida Elias",
            "Korhonen Virtanen Mäkinen Nieminen Mäkelä Hämäläinen Laine Heikkinen"),
    Country("PRT", (("Lisboa", "Europe/Lisbon"), ("Porto", "Europe/Lisbon"),
                    ("Funchal", "Atlantic/Madeira")),
            "high", "Portuguese", "EUR", "Escola Secundária de {city}", "Universidade de {city}",
            "Maria Francisco Leonor Afonso Matilde Tomás Beatriz João Inês Rodrigo",
            "Silva Santos Ferreira Pereira Oliveira Costa Rodrigues Gonçalves"),
    Country("GRC", (("Athens", "Europe/Athens"), ("Thessaloniki", "Europe/Athens"),
                    ("Patras", "Europe/Athens")),
            "high", "Greek", "EUR", "Geniko Lykeio {city}", "University of {city}",
            "Μαρία|Maria Γιώργος|Giorgos Ελένη|Eleni Δημήτρης|Dimitris Κατερίνα|Katerina "
            "Νίκος|Nikos Σοφία|Sofia Κώστας|Kostas",
            "Δημητρίου|Dimitriou Οικονόμου|Oikonomou Γεωργίου|Georgiou "
            "Νικολάου|Nikolaou Βασιλείου|Vasileiou Χριστοδούλου|Christodoulou", native_share=0.8),
    Country("KEN", (("Nairobi", "Africa/Nairobi"), ("Mombasa", "Africa/Nairobi"),
                    ("Kisumu", "Africa/Nairobi")),
            "lower-middle", "Swahili", "KES", "{city} High School", "University of {city}",
            "Wanjiru Otieno Achieng Kipchoge Njeri Mwangi Akinyi Kamau Chebet Omondi",
            "Odhiambo Mutua Wanjala Kiprono Njoroge Kariuki Onyango Wambui", weight=1.3),
    Country("NGA", (("Lagos", "Africa/Lagos"), ("Abuja", "Africa/Lagos"),
                    ("Ibadan", "Africa/Lagos")),
            "lower-middle", "English", "NGN", "{city} Model College", "University of {city}",
            "Ngozi Emeka Funmilayo Adebayo Amaka Ibrahim Zainab Tunde Chiamaka Oluwaseun",
            "Okafor Adeyemi Okonkwo Balogun Eze Abubakar Nwosu Ogunleye", weight=1.2),
    Country("ZAF", (("Johannesburg", "Africa/Johannesburg"), ("Cape Town", "Africa/Johannesburg"),
                    ("Durban", "Africa/Johannesburg")),
            "upper-middle", "English", "ZAR", "{city} High School", "University of {city}",
            "Thandiwe Sipho Lerato Thabo Naledi Pieter Ayanda Johan Zanele Lwazi",
            "Dlamini Nkosi van_der_Merwe Ndlovu Botha Mokoena Khumalo Naidoo"),
    Country("UGA", (("Kampala", "Africa/Kampala"), ("Gulu", "Africa/Kampala"),
                    ("Mbarara", "Africa/Kampala")),
            "low", "English", "UGX", "{city} Secondary School", "{city} University",
            "Nakato Mugisha Apio Ssemakula Namubiru Okello Atim Kato Nansubuga Wasswa",
            "Mukasa Nabirye Tumusiime Ochieng Byaruhanga Kiggundu Akello Ssali"),
    Country("MAR", (("Rabat", "Africa/Casablanca"), ("Casablanca", "Africa/Casablanca"),
                    ("Fès", "Africa/Casablanca")),
            "lower-middle", "French", "MAD", "Lycée {city}", "Université de {city}",
            "فاطمة|Fatima يوسف|Youssef خديجة|Khadija محمد|Mohamed سلمى|Salma أمين|Amine "
            "مريم|Meryem إدريس|Idriss",
            "العلوي|Alaoui بنعلي|Benali الإدريسي|Idrissi التازي|Tazi بنجلون|Benjelloun "
            "الفاسي|Fassi", native_share=0.5),
    Country("IND", (("Bengaluru", "Asia/Kolkata"), ("Pune", "Asia/Kolkata"),
                    ("Delhi", "Asia/Kolkata"), ("Chennai", "Asia/Kolkata")),
            "lower-middle", "English", "INR", "{city} Public School", "University of {city}",
            "अनन्या|Ananya आरव|Aarav दिया|Diya विवान|Vivaan ईशा|Isha अर्जुन|Arjun "
            "प्रिया|Priya रोहन|Rohan",
            "शर्मा|Sharma पटेल|Patel सिंह|Singh गुप्ता|Gupta वर्मा|Verma राव|Rao",
            native_share=0.3, weight=1.5),
    Country("JPN", (("Tokyo", "Asia/Tokyo"), ("Osaka", "Asia/Tokyo"), ("Sapporo", "Asia/Tokyo")),
            "high", "Japanese", "JPY", "{city} Senior High School", "{city} University",
            "結菜|Yuna 陽翔|Haruto 陽葵|Himari 蓮|Ren 凛|Rin 湊|Minato 結衣|Yui 大翔|Hiroto",
            "佐藤|Sato 鈴木|Suzuki 高橋|Takahashi 田中|Tanaka 伊藤|Ito 渡辺|Watanabe "
            "山本|Yamamoto 中村|Nakamura", family_first=True, native_share=0.85, weight=1.3),
    Country("KOR", (("Seoul", "Asia/Seoul"), ("Busan", "Asia/Seoul"), ("Daejeon", "Asia/Seoul")),
            "high", "Korean", "KRW", "{city} High School", "{city} National University",
            "서연|Seoyeon 민준|Minjun 지우|Jiwoo 도윤|Doyun 서윤|Seoyun 하준|Hajun 하은|Haeun "
            "예준|Yejun",
            "김|Kim 이|Lee 박|Park 최|Choi 정|Jung 강|Kang", family_first=True, native_share=0.85,
            native_sep=""),
    Country("IDN", (("Jakarta", "Asia/Jakarta"), ("Surabaya", "Asia/Jakarta"),
                    ("Makassar", "Asia/Makassar"), ("Jayapura", "Asia/Jayapura")),
            "upper-middle", "Indonesian", "IDR", "SMA Negeri {city}", "Universitas {city}",
            "Putri Budi Siti Agus Dewi Rizky Ayu Fajar Nur Adi",
            "Santoso Wijaya Saputra Hidayat Kusuma Pratama Setiawan Nugroho"),
    Country("VNM", (("Hanoi", "Asia/Ho_Chi_Minh"), ("Ho Chi Minh City", "Asia/Ho_Chi_Minh"),
                    ("Da Nang", "Asia/Ho_Chi_Minh")),
            "lower-middle", "Vietnamese", "VND", "THPT {city}", "Đại học {city}",
            "Linh Dũng Chi Hùng Hà Minh Ngọc Bảo Trang Khoa",
            "Nguyễn Trần Lê Phạm Hoàng Huỳnh Phan Vũ", family_first=True),
    Country("TUR", (("İstanbul", "Europe/Istanbul"), ("Ankara", "Europe/Istanbul"),
                    ("İzmir", "Europe/Istanbul")),
            "upper-middle", "Turkish", "TRY", "{city} Anadolu Lisesi", "{city} Üniversitesi",
            "Zeynep Yusuf Elif Eymen Defne Ömer Ecrin Mustafa Azra Çınar",
            "Yılmaz Kaya Demir Şahin Çelik Yıldız Aydın Öztürk"),
    Country("USA", (("Boston", "America/New_York"), ("Chicago", "America/Chicago"),
                    ("Denver", "America/Denver"), ("Seattle", "America/Los_Angeles")),
            "high", "English", "USD", "{city} High School", "University of {city}",
            "Olivia Liam Ava Noah Sophia Ethan Isabella Mason Mia James Aaliyah Diego",
            "Smith Johnson Williams Brown Garcia Miller Davis Nguyen Kim Rodriguez", weight=2.0),
    Country("CAN", (("Toronto", "America/Toronto"), ("Montréal", "America/Toronto"),
                    ("Vancouver", "America/Vancouver"), ("Calgary", "America/Edmonton")),
            "high", "English", "CAD", "{city} Secondary School", "University of {city}",
            "Olivia Liam Charlotte Noah Amelia William Chloé Félix Emily Benjamin",
            "Tremblay Smith Roy Brown Gagnon Wilson Singh Martin"),
    Country("MEX", (("Ciudad de México", "America/Mexico_City"), ("Monterrey", "America/Monterrey"),
                    ("Tijuana", "America/Tijuana")),
            "upper-middle", "Spanish", "MXN", "Preparatoria {city}", "Universidad de {city}",
            "Sofía Santiago Valentina Mateo Regina Leonardo Ximena Emiliano Camila Diego",
            "Hernández García Martínez López González Pérez Rodríguez Sánchez", weight=1.2),
    Country("BRA", (("São Paulo", "America/Sao_Paulo"), ("Recife", "America/Recife"),
                    ("Manaus", "America/Manaus"), ("Porto Alegre", "America/Sao_Paulo")),
            "upper-middle", "Portuguese", "BRL", "Escola Estadual {city}",
            "Universidade de {city}",
            "Maria Miguel Alice Arthur Helena Heitor Laura Davi Valentina Gabriel",
            "Silva Santos Oliveira Souza Rodrigues Ferreira Alves Pereira", weight=1.5),
    Country("COL", (("Bogotá", "America/Bogota"), ("Medellín", "America/Bogota"),
                    ("Cali", "America/Bogota")),
            "upper-middle", "Spanish", "COP", "Colegio {city}", "Universidad de {city}",
            "Isabella Santiago Mariana Sebastián Valeria Matías Luciana Samuel Gabriela Nicolás",
            "Rodríguez Gómez González Martínez García López Hernández Díaz"),
    Country("PER", (("Lima", "America/Lima"), ("Arequipa", "America/Lima"),
                    ("Cusco", "America/Lima")),
            "upper-middle", "Spanish", "PEN", "Colegio {city}", "Universidad de {city}",
            "Camila Thiago Valeria Liam Ariana Adriano Luana Gael Kiara Mateo",
            "Quispe Flores Sánchez Rodríguez García Mamani Huamán Chávez"),
    Country("CHL", (("Santiago", "America/Santiago"), ("Valparaíso", "America/Santiago"),
                    ("Concepción", "America/Santiago")),
            "high", "Spanish", "CLP", "Liceo {city}", "Universidad de {city}",
            "Agustina Agustín Sofía Benjamín Florencia Vicente Isidora Martín Josefa Tomás",
            "González Muñoz Rojas Díaz Pérez Soto Contreras Silva"),
    Country("AUS", (("Sydney", "Australia/Sydney"), ("Melbourne", "Australia/Melbourne"),
                    ("Perth", "Australia/Perth"), ("Brisbane", "Australia/Brisbane")),
            "high", "English", "AUD", "{city} High School", "University of {city}",
            "Charlotte Oliver Amelia Jack Isla Noah Mia William Olivia Thomas",
            "Smith Jones Williams Brown Wilson Taylor Nguyen Anderson", weight=1.2),
    Country("NZL", (("Auckland", "Pacific/Auckland"), ("Wellington", "Pacific/Auckland"),
                    ("Christchurch", "Pacific/Auckland")),
            "high", "English", "NZD", "{city} Grammar School", "University of {city}",
            "Isla Oliver Charlotte Jack Aria Leo Aroha Nikau Ruby Wiremu",
            "Smith Wilson Williams Brown Taylor Ngata Thompson Walker"),
)

# (cluster_id, name, kind, member countries)
CLUSTERS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    ("CL01", "Nordic–Baltic School Cluster", "cluster", ("SWE", "FIN", "POL", "DEU", "NLD")),
    ("CL02", "Mediterranean Classrooms Network", "network",
     ("ESP", "ITA", "FRA", "GRC", "PRT", "MAR", "TUR")),
    ("CL03", "Pacific Rim University Consortium", "consortium",
     ("JPN", "KOR", "AUS", "NZL", "USA", "CAN", "CHL", "IDN", "VNM")),
    ("CL04", "Africa–Europe Schools Network", "network",
     ("KEN", "NGA", "ZAF", "UGA", "DEU", "FRA", "NLD")),
    ("CL05", "Americas Learning Cluster", "cluster",
     ("USA", "CAN", "MEX", "BRA", "COL", "PER", "CHL")),
    ("CL06", "Global Science Classrooms Consortium", "consortium",
     ("IND", "JPN", "DEU", "BRA", "ZAF", "USA", "KEN")),
    ("CL07", "South–South Exchange Network", "network",
     ("BRA", "IND", "IDN", "KEN", "NGA", "COL", "VNM", "UGA", "PER", "MEX")),
    ("CL08", "Iberoamerican Schools Cluster", "cluster",
     ("ESP", "PRT", "MEX", "COL", "PER", "CHL", "BRA")),
)
PROGRAMS = {
    "cluster": ("School Partnerships", "Virtual Exchange Fund"),
    "network": ("Global Classrooms", "Virtual Exchange Fund", "Science Across Borders"),
    "consortium": ("COIL Pilot", "Mobility Grants", "Science Across Borders"),
}
PURPOSES = ("language practice", "joint science project", "global understanding",
            "climate action project", "digital storytelling", "entrepreneurship challenge",
            "cultural heritage", "mirror class")
# Approximate units per euro, used only to state budgets in local currencies.
EUR_RATES = {"EUR": 1.0, "USD": 1.08, "PLN": 4.3, "SEK": 11.3, "KES": 140.0, "NGN": 1600.0,
             "ZAR": 20.0, "UGX": 4000.0, "MAD": 10.8, "INR": 90.0, "JPY": 160.0, "KRW": 1450.0,
             "IDR": 17000.0, "VND": 27000.0, "TRY": 35.0, "CAD": 1.48, "MXN": 20.0, "BRL": 5.8,
             "COP": 4400.0, "PEN": 4.0, "CLP": 1000.0, "AUD": 1.65, "NZD": 1.8}
INCOME_CONNECTIVITY = {  # P(low, medium, high connectivity) by income group
    "low": (0.5, 0.4, 0.1), "lower-middle": (0.3, 0.5, 0.2),
    "upper-middle": (0.12, 0.48, 0.4), "high": (0.03, 0.22, 0.75),
}
CONNECTIVITY = ("low", "medium", "high")

ACTIVITIES = ("message", "forum_post", "video_call", "live_session", "upload", "peer_review",
              "quiz", "site_visit", "workshop")
ACTIVITY_WEIGHTS = np.array([  # rows: virtual, blended, physical
    [.35, .15, .15, .10, .12, .08, .05, .00, .00],
    [.30, .12, .12, .10, .10, .08, .05, .05, .08],
    [.22, .08, .08, .10, .10, .06, .04, .14, .18],
])
ACTIVITY_MEDIAN_MIN = np.array([2, 8, 40, 60, 10, 20, 12, 120, 90], dtype=float)

# Local weekday (Mon..Sun) and hour profiles: curricular school, curricular university,
# extracurricular. Teachers add some evening preparation on top.
WEEKDAY_P = np.array([
    [.20, .20, .20, .20, .18, .015, .005],
    [.20, .21, .21, .20, .15, .02, .01],
    [.16, .16, .16, .16, .14, .13, .09],
])
HOUR_FIRST = (7, 8, 12)
HOUR_W = (
    [2, 14, 16, 16, 15, 8, 12, 11, 5, 1],
    [6, 11, 12, 12, 8, 9, 11, 10, 8, 6, 4, 3],
    [5, 8, 12, 16, 16, 14, 11, 9, 6, 3],
)
TEACHER_EVENING_SHARE = 0.12

# Effect sizes for a 1..5 scale; scaled by (max - min) / 4 for other ranges. Instruments not
# listed get the defaults: adding an instrument needs no code here either.
BASE_GAIN = {"icc": 0.13, "collab": 0.15, "digital": 0.11, "gcit": 0.12, "flc": 0.16}
DEFAULT_BASE_GAIN = 0.12
MODALITY_MULT = {"digital": (1.3, 1.15, 0.8)}  # virtual work trains digital skills most
DEFAULT_MODALITY_MULT = (1.0, 1.4, 1.8)  # physical > blended > virtual
DOSE_SLOPE = 0.02  # gain per 10 events (up to DOSE_CAP)
# The design whose log1p(events) slope truth.json states as the dose–response target.
DOSE_DESIGN = ("intercept", "log1p_events", "blended", "physical", "extracurricular")
SETTINGS = ("curricular", "extracurricular")
COMPARISON_GAIN = 0.02
LATENT_SD = 0.6
GAIN_SD = 0.25
OCCASION_SD = 0.15
GENERAL_FACTOR_SHARE = 0.3  # share of baseline variance common to all scales of a person
# Clustered outcomes, as real programs have them (issue 10): a random intercept per exchange
# (everyone attached to it, comparison classes too) and per institution on the latent level, and
# a random slope per exchange on the exchange participants' gain. On a 1..5 scale the level
# effects give ICCs of about 0.06 (exchange) and 0.02 (institution) of a pre score's variance.
EXCHANGE_SD = 0.17
INSTITUTION_SD = 0.10
EXCHANGE_GAIN_SD = 0.06

# One item that is not invariant across languages: answered in Spanish (the exchange's working
# language), its answers sit `shift` points higher at the same latent level (an intercept
# shift, e.g. a translation that reads stronger), which the invariance check must find.
# An integer shift keeps the truth's expected scores exact (round(a) + 1 = round(a + 1)).
DIF_PLANT: dict | None = {"item": "gcit_3", "language": "es", "shift": 1.0}

# Issue 13, scale-up vs scale-in. "Light touch": an active participant who stops after the first
# 1..LIGHT_TOUCH_MAX_EVENTS of the events drawn for them (a uniform number, own stream), so that
# the share reaching the meaningful dose (5 events or 300 minutes) is ~3/4, not ~100 %. Two
# clusters are planted over the data's last two terms (calendar half-years of the exchange's
# start): "up" grows its participants (its exchange schedule holds at least SCALE_UP_RATIO as
# many exchanges in the last term as in the one before, moved there if not) while more of its
# newcomers are light touch, so depth falls; "in" keeps or loses participants (no more
# exchanges in the last term than before) while fewer are light touch, so depth rises. Shares
# are (previous term, last term). Exchange counts do not fix participant counts: truth.json
# "scale"."planted" states the quadrant the schedule gives and whether it is the planted one.
LIGHT_TOUCH_SHARE = 0.25
LIGHT_TOUCH_MAX_EVENTS = 4
SCALE_PLANT = {"up": {"cluster": "CL03", "light_touch": (0.25, 0.55),
                      "quadrant": "scaling up only"},
               "in": {"cluster": "CL01", "light_touch": (0.45, 0.05),
                      "quadrant": "scaling in only"}}
SCALE_UP_RATIO = 1.5


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent generator per (purpose, chunk), so output never depends on call order."""
    return np.random.default_rng([seed, *stream])


_ASCII_FIX = str.maketrans({"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ø": "o", "ß": "ss",
                            "ı": "i", "æ": "ae"})


def _ascii(s: str) -> str:
    s = unicodedata.normalize("NFKD", s.translate(_ASCII_FIX))
    return "".join(ch for ch in s if ord(ch) < 128)


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", _ascii(s).lower()).strip("-")


def _days(d: date) -> int:
    return (d - _EPOCH).days


def _iso(day: int) -> str:
    return date.fromordinal(_EPOCH.toordinal() + int(day)).isoformat()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _csv_cell(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace('"', '""') + '"'
    return str(v)


def _csv_line(values: list[object]) -> bytes:
    return (",".join(_csv_cell(v) for v in values) + "\n").encode()


_NO_HEADER = pacsv.WriteOptions(include_header=False)
Tick = Callable[..., None]  # advances a progress bar by n (default 1)


class _CsvOut:
    """A CSV file written in pieces: our own header, pyarrow tables, and raw planted lines.

    It counts data rows so that a planted line's row number (header = row 1) is known.
    """

    def __init__(self, path: Path, columns: list[str]) -> None:
        self.f = open(path, "wb")  # noqa: SIM115 -- closed by __exit__; written in many pieces
        self.f.write((",".join(columns) + "\n").encode())
        self.rows = 0

    def table(self, t: pa.Table) -> None:
        if t.num_rows:
            pacsv.write_csv(t, self.f, _NO_HEADER)
            self.rows += t.num_rows

    def line(self, values: list[object]) -> int:
        self.f.write(_csv_line(values))
        self.rows += 1
        return self.rows + 1  # file row number, header = 1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.f.close()


def _write_planted(csv: _CsvOut, t: pa.Table, plants: list[tuple[int, list, dict]],
                   bad: list[dict]) -> None:
    """Write `t` with each planted line after the given count of its rows; record its row."""
    pos = 0
    for after, values, record in sorted(plants, key=lambda p: p[0]):
        after = min(after, t.num_rows)
        csv.table(t.slice(pos, after - pos))
        pos = after
        bad.append({"file": record.pop("file"), "row": csv.line(values), **record})
    csv.table(t.slice(pos))


def _write_xlsx(path: Path, header: list[str], rows: list[list[object]]) -> None:
    """Write a one-sheet workbook byte-identically for the same content.

    openpyxl stamps the current time into docProps/core.xml and into every zip entry; both are
    rewritten to a fixed date so that the same seed always gives the same file.
    """
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "clusters"
    ws.append(header)
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    fixed = "2026-01-01T00:00:00Z"
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as src, zipfile.ZipFile(
        path, "w", zipfile.ZIP_DEFLATED
    ) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = data.decode()
                text = re.sub(r"(<dcterms:created[^>]*>)[^<]*", rf"\g<1>{fixed}", text)
                text = re.sub(r"(<dcterms:modified[^>]*>)[^<]*", rf"\g<1>{fixed}", text)
                data = text.encode()
            dst.writestr(zipfile.ZipInfo(info.filename, (2026, 1, 1, 0, 0, 0)), data,
                         zipfile.ZIP_DEFLATED)


class _Progress:
    """A rich progress bar per file, or nothing when progress is off."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._p = None

    def __enter__(self) -> Self:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )
            self._p = Progress(TextColumn("{task.description:<18}"), BarColumn(),
                               MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
            self._p.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._p is not None:
            self._p.__exit__(*exc)

    @contextmanager
    def task(self, name: str, total: int) -> Iterator[Tick]:
        if self._p is None:
            yield lambda n=1: None
            return
        tid = self._p.add_task(name, total=total)
        yield lambda n=1: self._p.advance(tid, n)
        self._p.update(tid, completed=total)


# ---------------------------------------------------------------------------------------------
# The program's structure: institutions, exchanges, partnerships
# ---------------------------------------------------------------------------------------------

@dataclass
class _Structure:
    inst_ids: list[str]
    inst_country: np.ndarray  # index into COUNTRIES
    inst_tz: list[str]
    inst_kind: np.ndarray  # 0 school, 1 university
    inst_conn: np.ndarray  # index into CONNECTIVITY
    inst_domain: list[str]
    inst_exchanges: list[np.ndarray]
    ex_ids: list[str]
    ex_modality: np.ndarray
    ex_setting: np.ndarray  # 0 curricular, 1 extracurricular
    ex_start: np.ndarray  # days since 1970, a Monday
    ex_weeks: np.ndarray
    partnerships: list[dict]
    ex_language: list[str] = field(default_factory=list)  # ISO 639-1 code ("" if none)
    # issue 13 (scheduling): school-hours overlap per partnership, see _plant_scheduling
    overlap: dict[str, float] = field(default_factory=dict)
    ex_cluster: np.ndarray | None = None  # index into CLUSTERS (issue 13, scale-up truth)
    scale_moved: dict = field(default_factory=dict)  # see _plant_scale_schedule
    cost: dict = field(default_factory=dict)  # issue 13: budgets' truth (see _write_rates)


def _structure(out: Path, seed: int, n_participants: int) -> tuple[
        _Structure, dict]:
    """Write clusters, institutions, exchanges and partnerships; return what later steps need."""
    import pycountry

    rng = _rng(seed, 1)
    n_inst = max(150, round(150 * (n_participants / 10_000) ** (1 / 3)))
    n_c = len(COUNTRIES)
    weights = np.array([c.weight for c in COUNTRIES])
    inst_country = np.concatenate([np.repeat(np.arange(n_c), 2),
                                   rng.choice(n_c, n_inst - 2 * n_c, p=weights / weights.sum())])
    inst_country = np.sort(inst_country, kind="stable")
    clusters_of = [[k for k, cl in enumerate(CLUSTERS) if c.alpha3 in cl[3]] for c in COUNTRIES]
    rows: list[list] = []
    inst_tz: list[str] = []
    inst_kind: list[int] = []
    inst_conn: list[int] = []
    inst_cluster: list[int] = []
    inst_domain: list[str] = []
    names: dict[str, int] = {}
    for i, ci in enumerate(inst_country):
        c = COUNTRIES[ci]
        cluster = clusters_of[ci][rng.integers(len(clusters_of[ci]))]
        p_uni = 0.6 if CLUSTERS[cluster][2] == "consortium" else 0.25
        kind = int(rng.random() < p_uni)
        city, tz = c.cities[rng.integers(len(c.cities))]
        base = (c.university if kind else c.school).format(city=city)
        names[base] = names.get(base, 0) + 1
        k_same = names[base]
        suffix = f" – Campus {k_same}" if kind else f" {k_same}"
        name = base if k_same == 1 else base + suffix
        conn = int(rng.choice(3, p=INCOME_CONNECTIVITY[c.income]))
        pc_country = pycountry.countries.get(alpha_3=c.alpha3)
        written = (pc_country.alpha_2, pc_country.alpha_3, pc_country.name)[int(rng.choice(
            3, p=[0.4, 0.3, 0.3]))]
        rows.append([f"I{i + 1:04d}", name, written, CLUSTERS[cluster][0], tz,
                     ("school", "university")[kind], city, c.income, CONNECTIVITY[conn]])
        inst_tz.append(tz)
        inst_kind.append(kind)
        inst_conn.append(conn)
        inst_cluster.append(cluster)
        inst_domain.append(_slug(name) + ".example.org")
    inst_ids = [r[0] for r in rows]
    inst_cluster_a = np.array(inst_cluster)
    inst_kind_a = np.array(inst_kind)

    _write_xlsx(out / "clusters.xlsx", ["cluster_id", "name", "kind"],
                [[c[0], c[1], c[2]] for c in CLUSTERS])
    cols = ["institution_id", "name", "country", "cluster_id", "timezone", "kind", "city",
            "income_group", "connectivity"]
    pacsv.write_csv(pa.table({k: [r[j] for r in rows] for j, k in enumerate(cols)}),
                    out / "institutions.csv")

    # Exchanges: members from one cluster, mostly across borders; about half also bring in a
    # domestic partner of the lead institution, which gives the domestic partnerships.
    n_ex = max(50, n_inst // 3)
    members_of: list[list[int]] = []
    edges: list[tuple[int, int, int]] = []  # (exchange, a, b)
    ex_cluster = []
    cl_members = [np.flatnonzero(inst_cluster_a == k) for k in range(len(CLUSTERS))]
    cl_w = np.array([len(m) for m in cl_members], dtype=float)
    for e in range(n_ex):
        k = int(rng.choice(len(CLUSTERS), p=cl_w / cl_w.sum()))
        pool = cl_members[k]
        lead = int(pool[rng.integers(len(pool))])
        mem = [lead]
        for _ in range(min(1 + int(rng.poisson(1.2)), len(pool) - 1)):
            foreign = [int(x) for x in pool if x not in mem
                       and inst_country[x] != inst_country[lead]]
            other = [int(x) for x in pool if x not in mem]
            cand = foreign if foreign and rng.random() < 0.85 else other
            if not cand:
                break
            j = cand[rng.integers(len(cand))]
            partner = lead if rng.random() < 0.6 else mem[rng.integers(len(mem))]
            mem.append(j)
            edges.append((e, partner, j))
        if rng.random() < 0.5:
            same = [int(x) for x in np.flatnonzero(inst_country == inst_country[lead])
                    if x not in mem]
            if same:
                j = same[rng.integers(len(same))]
                mem.append(j)
                edges.append((e, lead, j))
        members_of.append(mem)
        ex_cluster.append(k)
    # Every institution takes part in at least one exchange of its cluster.
    used = {m for mem in members_of for m in mem}
    for i in range(n_inst):
        if i in used:
            continue
        mine = [e for e in range(len(members_of)) if ex_cluster[e] == inst_cluster[i]]
        e = mine[rng.integers(len(mine))] if mine else None
        if e is None:
            members_of.append([i])
            ex_cluster.append(inst_cluster[i])
            continue
        partner = members_of[e][rng.integers(len(members_of[e]))]
        members_of[e].append(i)
        edges.append((e, partner, i))
    n_ex = len(members_of)

    ex_modality = rng.choice(3, n_ex, p=[0.5, 0.3, 0.2])
    ex_setting = (rng.random(n_ex) < 0.35).astype(np.int8)
    ex_start = _days(_FIRST_MONDAY) + 7 * rng.integers(0, _START_WEEKS, n_ex)
    scale_moved = _plant_scale_schedule(ex_start, np.array(ex_cluster))
    lo_w, hi_w = np.array([6, 8, 3]), np.array([14, 20, 8])
    ex_weeks = rng.integers(lo_w[ex_modality], hi_w[ex_modality] + 1)
    eur = np.round(np.exp(rng.normal(0, 0.35, n_ex))
                   * np.array([9_000, 45_000, 160_000])[ex_modality]
                   * np.array([len(m) for m in members_of]) / 3, -2)
    ex_rows = []
    for e, mem in enumerate(members_of):
        lead_c = COUNTRIES[inst_country[mem[0]]]
        cities = list(dict.fromkeys(rows[m][6] for m in mem))[:2]
        purpose = PURPOSES[rng.integers(len(PURPOSES))]
        language = "English" if rng.random() < 0.6 else lead_c.language
        if purpose == "language practice" and lead_c.language != "English":
            language = lead_c.language
        kind = CLUSTERS[ex_cluster[e]][2]
        program = PROGRAMS[kind][rng.integers(len(PROGRAMS[kind]))]
        cur = rng.random()
        currency = lead_c.currency if cur < 0.3 else ("EUR" if cur < 0.7 else "USD")
        budget: float | None = float(round(eur[e] * EUR_RATES[currency], -2))
        if rng.random() < 0.05:
            budget, currency = None, None
        start = int(ex_start[e])
        ex_rows.append([
            f"X{e + 1:03d}", f"{purpose.capitalize()}: {' – '.join(cities)}", program,
            CLUSTERS[ex_cluster[e]][0], MODALITIES[ex_modality[e]],
            ("curricular", "extracurricular")[ex_setting[e]], purpose, language,
            _iso(start), _iso(start + 7 * int(ex_weeks[e]) - 1),
            None if budget is None else int(budget), currency,
        ])
    ex_ids = [r[0] for r in ex_rows]
    cols = ["exchange_id", "name", "program", "cluster_id", "modality", "setting", "purpose",
            "language", "start_date", "end_date", "budget", "currency"]
    data = {k: [r[j] for r in ex_rows] for j, k in enumerate(cols)}
    pacsv.write_csv(pa.table({**data, "budget": pa.array(data["budget"], pa.int64())}),
                    out / "exchanges.csv")

    # Partnerships: links that may predate the exchange; cross-border links fade sooner, and
    # links still alive at AS_OF are censored. The duration from started_on is Weibull with one
    # shape and a shorter scale across borders, so the hazards are proportional with the known
    # ratio PARTNERSHIP_HAZARD_RATIO (truth.json "partnerships.hazard_ratio_cross_border"); the
    # draws are the same as before this was planted, only the end is counted from the start.
    as_of = _days(AS_OF)
    p_rows, plist = [], []
    for n, (e, a, b) in enumerate(edges):
        domestic = bool(inst_country[a] == inst_country[b])
        start = int(ex_start[e]) - (0 if rng.random() < 0.5 else int(rng.integers(30, 700)))
        scale = PARTNERSHIP_SCALE_DAYS["domestic" if domestic else "cross_border"]
        end = start + int(scale * rng.weibull(PARTNERSHIP_SHAPE))
        ended = end if end <= as_of else None
        p_rows.append([f"PS{n + 1:04d}", ex_ids[e], inst_ids[a], inst_ids[b], _iso(start),
                       None if ended is None else _iso(ended)])
        plist.append({"domestic": domestic, "days": (ended if ended is not None else as_of)
                      - start, "censored": ended is None, "id": p_rows[-1][0],
                      "exchange": e, "a": a, "b": b})
    cols = ["partnership_id", "exchange_id", "institution_a", "institution_b", "started_on",
            "ended_on"]
    pacsv.write_csv(pa.table({k: pa.array([r[j] for r in p_rows], pa.string())
                              for j, k in enumerate(cols)}), out / "partnerships.csv")

    inst_exchanges = [np.array(sorted(e for e, mem in enumerate(members_of) if i in mem))
                      for i in range(n_inst)]
    st = _Structure(inst_ids, inst_country, inst_tz, inst_kind_a, np.array(inst_conn),
                    inst_domain, inst_exchanges, ex_ids, ex_modality, ex_setting, ex_start,
                    ex_weeks, plist)
    st.ex_language = [language_code(r[7]) or "" for r in ex_rows]
    st.ex_cluster = np.array(ex_cluster)
    st.scale_moved = {k: [ex_ids[e] for e in v] for k, v in scale_moved.items()}
    counts = {"clusters.xlsx": len(CLUSTERS), "institutions.csv": n_inst,
              "exchanges.csv": n_ex, "partnerships.csv": len(p_rows)}
    counts["rates.csv"], st.cost = _write_rates(out, ex_rows)
    return st, counts


def _term_ix(days: np.ndarray) -> np.ndarray:
    """Calendar half-year of day numbers as year * 2 + (0 for H1, 1 for H2)."""
    d = np.asarray(days).astype("datetime64[D]")
    month = d.astype("datetime64[M]").astype(int) % 12
    return (d.astype("datetime64[Y]").astype(int) + 1970) * 2 + (month >= 6)


def _term_monday(term_ix: int, week: int) -> int:
    """Day number of the `week`-th Monday (from 0) of a calendar half-year."""
    first = date(term_ix // 2, 1 if term_ix % 2 == 0 else 7, 1)
    return _days(first) + (7 - first.weekday()) % 7 + 7 * week


def _plant_scale_schedule(ex_start: np.ndarray, ex_cluster: np.ndarray) -> dict[str, list]:
    """Give SCALE_PLANT's clusters the exchange schedule their plant needs over the data's last
    two terms: "up" at least SCALE_UP_RATIO times as many exchanges in the last term as in the
    one before, "in" at least one in each and no more in the last. While a cluster's schedule
    does not, one exchange moves a term (from an earlier term into the one before the last,
    from there into the last for "up", back from the last for "in"), keeping its week within
    the term (at most the 20th, so no start lies after _START_WEEKS). Changes `ex_start` in
    place, no random draw; returns the moved exchanges per plant (none for the default seed)."""
    last = int(_term_ix(np.array([_days(_FIRST_MONDAY) + 7 * (_START_WEEKS - 1)]))[0])
    ids = [c[0] for c in CLUSTERS]
    moved: dict[str, list] = {}
    for kind, plant in SCALE_PLANT.items():
        mine = np.flatnonzero(ex_cluster == ids.index(plant["cluster"]))
        moved[kind] = []
        for _ in range(len(mine) * 3):
            t = _term_ix(ex_start[mine])
            prev, cur, earlier = mine[t == last - 1], mine[t == last], mine[t < last - 1]
            latest = int(earlier[np.argmax(ex_start[earlier])]) if len(earlier) else None
            if kind == "up":
                if len(prev) and len(cur) >= SCALE_UP_RATIO * len(prev):
                    break
                e, to = (int(prev[-1]), last) if len(prev) else (latest, last - 1)
            else:
                if len(prev) and 1 <= len(cur) <= len(prev):
                    break
                if not len(cur) and len(prev) >= 2:
                    e, to = int(prev[-1]), last
                elif len(cur) >= 2 and len(cur) > len(prev):
                    e, to = int(cur[0]), last - 1
                else:
                    e, to = latest, last - 1
            if e is None:
                break
            week = (int(ex_start[e]) - _term_monday(int(_term_ix(ex_start[e:e + 1])[0]), 0)) // 7
            ex_start[e] = _term_monday(to, max(0, min(week, 20)))
            moved[kind].append(e)
    return moved


def _write_rates(out: Path, ex_rows: list[list]) -> tuple[int, dict]:
    """rates.csv: every currency of EUR_RATES for every year an exchange can start in, against
    EUR (no random draw). Returns its row count and the truth res_cost must recover: the
    budgets converted back into EUR and the exchanges without a budget."""
    years = range(_FIRST_MONDAY.year, AS_OF.year + 1)
    rows = [[c, y, r, "EUR"] for c, r in sorted(EUR_RATES.items()) for y in years]
    pacsv.write_csv(pa.table({"currency": [r[0] for r in rows], "year": [r[1] for r in rows],
                              "rate": [float(r[2]) for r in rows], "base": [r[3] for r in rows]}),
                    out / "rates.csv")
    budgeted = [(r[10], r[11]) for r in ex_rows if r[10] is not None]
    return len(rows), {
        "base": "EUR", "exchanges": len(ex_rows),
        "exchanges_without_budget": len(ex_rows) - len(budgeted),
        "budget_eur_total": round(sum(b / EUR_RATES[c] for b, c in budgeted), 2),
        "definition": "rates.csv holds EUR_RATES for every year 2023-2026 against EUR, so every "
                      "budget converts: res_cost's overall row is in EUR with budget = "
                      "budget_eur_total and n_exchanges_no_budget = exchanges_without_budget",
    }


# Weibull(shape k, scale λ) durations: hazard (k/λ)(t/λ)^(k−1), so two scales with one shape
# give hazards in the constant ratio (λ_domestic / λ_cross)^k = PARTNERSHIP_HAZARD_RATIO.
PARTNERSHIP_SHAPE = 1.4
PARTNERSHIP_HAZARD_RATIO = 2.0
PARTNERSHIP_SCALE_DAYS = {"domestic": 1500.0,
                          "cross_border": 1500.0 / PARTNERSHIP_HAZARD_RATIO ** (1 / 1.4)}


# ---------------------------------------------------------------------------------------------
# People: participants, their engagement and their survey responses
# ---------------------------------------------------------------------------------------------

@dataclass
class _People:
    ids: pa.Array  # source participant ids, P000001 ...
    inst: np.ndarray
    exch: np.ndarray
    comparison: np.ndarray
    teacher: np.ndarray
    n_events: np.ndarray
    responded: np.ndarray  # (n, 3) bool, by wave
    group: np.ndarray  # index into GROUPS
    rows_written: int = 0
    small_cells: dict = field(default_factory=dict)  # see _plant_small_cells
    # issue 13: equity groups and the one-sided partnerships (see _plant_one_sided)
    gender: np.ndarray | None = None  # 0 female, 1 male, 2 non-binary, 3 not reported
    birth_year: np.ndarray | None = None
    p_post: np.ndarray | None = None  # P(answer post) as drawn (1 where a plant forces it)
    flat_gain: np.ndarray | None = None  # True: no latent gain (the one-sided plant)
    one_sided: list = field(default_factory=list)
    minutes: np.ndarray | None = None  # minutes logged per participant (issue 13, scale truth)
    # issue 13 (scale): events drawn before the light-touch cut (n_events keeps the first of
    # them), the light-touch probability used, and minutes of the full and the cut log
    n_drawn: np.ndarray | None = None
    light_p: np.ndarray | None = None
    minutes_full: np.ndarray | None = None
    minutes_light: np.ndarray | None = None
    light_cap: np.ndarray | None = None


def _name_pools() -> dict[str, list]:
    """Concatenated first- and last-name pools of all countries, with offsets per country."""
    pools: dict[str, list] = {k: [] for k in ("fn", "fl", "fa", "ln", "ll", "la")}
    pools.update({"f_off": [], "f_n": [], "l_off": [], "l_n": []})
    for c in COUNTRIES:
        for key, text in (("f", c.first), ("l", c.last)):
            toks = [t.replace("_", " ") for t in text.split()]
            pools[f"{key}_off"].append(len(pools[f"{key}n"]))
            pools[f"{key}_n"].append(len(toks))
            for t in toks:
                native, _, latin = t.partition("|")
                latin = latin or native
                pools[f"{key}n"].append(native)
                pools[f"{key}l"].append(latin)
                pools[f"{key}a"].append(re.sub(r"[^a-z]", "", _ascii(latin).lower()))
    return pools


def _participants(out: Path, seed: int, n: int, st: _Structure, bad: list[dict],
                  tick: Tick) -> _People:
    """Draw the roster and engagement; write participants.csv (with names and e-mails)."""
    rng = _rng(seed, 2)
    width = max(6, len(str(n + 10)))
    ids = pa.array([f"P{i:0{width}d}" for i in range(1, n + 1)])
    n_inst = len(st.inst_ids)
    size = np.exp(rng.normal(0, 0.5, n_inst)) * np.where(st.inst_kind == 1, 2.0, 1.0)
    inst = rng.choice(n_inst, n, p=size / size.sum()).astype(np.int32)
    u = rng.random(n)
    exch = np.empty(n, dtype=np.int32)
    for i in range(n_inst):
        m = inst == i
        ex = st.inst_exchanges[i]
        exch[m] = ex[np.minimum((u[m] * len(ex)).astype(int), len(ex) - 1)]
    comparison = rng.random(n) < 0.10
    teacher = rng.random(n) < 0.08

    # Engagement: heavy-tailed (lognormal) event counts; teachers, curricular exchanges and good
    # connectivity bring more; ~4 % of participants never log anything.
    setting = st.ex_setting[exch]
    conn = st.inst_conn[inst]
    lam = (np.exp(rng.normal(0, 0.9, n)) * np.where(teacher, 1.4, 1.0)
           * np.where(setting == 1, 0.8, 1.0) * np.array(CONNECTIVITY_EVENT_RATE)[conn])
    active = ~comparison & (rng.random(n) >= 0.04)
    lam *= MEAN_EVENTS / lam[active].mean() if active.any() else 1.0
    n_drawn = np.where(active, rng.poisson(lam), 0).astype(np.int64)
    n_events, light_p, light_cap = _light_touch(seed, n_drawn, exch, st)

    # Attrition: everyone is invited to every wave; the less engaged skip post and follow-up.
    # On the events as drawn, before the light-touch cut (issue 13's scale plant): who answers
    # is left as it was, so the plant moves depth without thinning the outcome data the other
    # planted effects (reciprocity, dose, equity) are recovered from.
    z = np.log1p(n_drawn)
    treated = ~comparison
    mu, sd = (z[treated].mean(), z[treated].std() or 1.0) if treated.any() else (0.0, 1.0)
    z = (z - mu) / sd
    p = np.empty((n, 3))
    p[:, 0] = 0.92
    p[:, 1] = np.where(comparison, ATTRITION["comparison_post"],
                       _sigmoid(ATTRITION["post_intercept"] + ATTRITION["slope"] * z))
    p[:, 2] = np.where(comparison, ATTRITION["comparison_followup"],
                       _sigmoid(ATTRITION["followup_intercept"] + ATTRITION["slope"] * z))
    responded = rng.random((n, 3)) < p
    small_cells = _plant_small_cells(seed, inst, exch, comparison, responded, st)
    group = np.where(comparison, 3, st.ex_modality[exch]).astype(np.int8)

    # Person attributes.
    country = st.inst_country[inst]
    uni = st.inst_kind[inst] == 1
    start_year = 1970 + (st.ex_start[exch] / 365.25).astype(int)
    age = np.where(teacher, rng.integers(25, 63, n),
                   np.where(uni, rng.integers(19, 27, n), rng.integers(12, 19, n)))
    birth_year = start_year - age
    g = rng.random(n)
    female_p = np.where(teacher, 0.62, 0.5)
    gender = np.where(g < female_p, 0, np.where(g < 0.975, 1, np.where(g < 0.99, 2, 3)))
    pools = _name_pools()
    f_off, f_n = np.array(pools["f_off"]), np.array(pools["f_n"])
    l_off, l_n = np.array(pools["l_off"]), np.array(pools["l_n"])
    u_first = rng.random(n)
    half = f_n[country] // 2
    fi = f_off[country] + np.where(gender <= 1, 2 * (u_first * half).astype(int) + gender,
                                   (u_first * f_n[country]).astype(int))
    li = l_off[country] + (rng.random(n) * l_n[country]).astype(int)
    native = rng.random(n) < np.array([c.native_share for c in COUNTRIES])[country]
    fam = np.array([c.family_first for c in COUNTRIES])[country]
    email_style = rng.random(n)
    email_num = rng.integers(1, 100, n)
    people = _People(ids, inst, exch, comparison, teacher, n_events, responded, group,
                     small_cells=small_cells)
    people.n_drawn, people.light_p, people.light_cap = n_drawn, light_p, light_cap
    people.gender, people.birth_year = gender.astype(np.int8), birth_year
    people.p_post = p[:, 1].copy()
    if small_cells.get("exchange"):  # its participants answer pre and post by the plant
        people.p_post[exch == st.ex_ids.index(small_cells["exchange"]["exchange_id"])] = 1.0
    _plant_one_sided(people, st)

    cols = ["participant_id", "institution_id", "role", "gender", "birth_year", "comparison",
            "name", "email"]
    with _CsvOut(out / "participants.csv", cols) as csv:
        inst_ids = pa.array(st.inst_ids)
        domains = pa.array(st.inst_domain)
        genders = pa.array(["female", "male", "non-binary", None])
        roles = pa.array(["student", "teacher"])
        seps = pa.array([" ", "", " "])
        native_sep_ix = np.array([1 if c.native_sep == "" else 0 for c in COUNTRIES])[country]
        for a in range(0, n, CHUNK):
            b = min(n, a + CHUNK)
            s = slice(a, b)
            nat = pa.array(native[s])
            first = pc.if_else(nat, pa.array(pools["fn"]).take(fi[s]),
                               pa.array(pools["fl"]).take(fi[s]))
            last = pc.if_else(nat, pa.array(pools["ln"]).take(li[s]),
                              pa.array(pools["ll"]).take(li[s]))
            famv = pa.array(fam[s])
            sep = seps.take(np.where(native[s], native_sep_ix[s], 2))
            name = pc.binary_join_element_wise(pc.if_else(famv, last, first),
                                               pc.if_else(famv, first, last), sep)
            fa = pa.array(pools["fa"]).take(fi[s])
            la = pa.array(pools["la"]).take(li[s])
            es = email_style[s]
            local_first = pc.if_else(pa.array(es < 0.25), pc.utf8_slice_codeunits(fa, 0, 1), fa)
            num = pc.if_else(pa.array(es < 0.6), pa.array(email_num[s].astype(str)),
                             pa.scalar("", pa.string()))
            dot = pc.if_else(pa.array(es > 0.85), pa.scalar("_"), pa.scalar("."))
            local = pc.binary_join_element_wise(local_first, dot, la, num, "")
            email = pc.binary_join_element_wise(local, domains.take(inst[s]), "@")
            t = pa.table({
                "participant_id": ids[a:b], "institution_id": inst_ids.take(inst[s]),
                "role": roles.take(teacher[s].astype(np.int8)), "gender": genders.take(gender[s]),
                "birth_year": pa.array(birth_year[s]), "comparison": pa.array(comparison[s]),
                "name": name, "email": email,
            })
            plants = []
            if a == 0:
                for k, after in enumerate((37, n // 2)):
                    pid = f"P{n + 1 + k:0{width}d}"
                    unknown = f"I{len(st.inst_ids) + 500 + k:04d}"
                    plants.append((after, [pid, unknown, "student", "female", 2010, False,
                                           "Alex Unknown", f"alex.unknown{k}@example.org"],
                                   {"file": "participants.csv", "column": "institution_id",
                                    "rule": "reference", "value": unknown,
                                    "why": "participant at an unknown institution"}))
            _write_planted(csv, t, plants, bad)
            tick(b - a)
        people.rows_written = csv.rows
    return people


def _light_touch(seed: int, n_drawn: np.ndarray, exch: np.ndarray, st: _Structure
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Issue 13: the events each participant keeps (`n_events`), the light-touch probability
    used and the number a light-touch participant keeps. With probability LIGHT_TOUCH_SHARE
    (SCALE_PLANT's shares for its clusters in the data's last two terms) an active participant
    keeps only the first 1..LIGHT_TOUCH_MAX_EVENTS (uniform) of the events drawn for them;
    `_events` draws all of them (so every other row is as before) and writes the kept ones.
    Own stream: no other draw changes."""
    rng = _rng(seed, 14)
    u, cap = rng.random(len(n_drawn)), rng.integers(1, LIGHT_TOUCH_MAX_EVENTS + 1, len(n_drawn))
    term = _term_ix(st.ex_start[exch])
    last = int(_term_ix(st.ex_start).max())
    p = np.full(len(n_drawn), LIGHT_TOUCH_SHARE)
    ids = [c[0] for c in CLUSTERS]
    for plant in SCALE_PLANT.values():
        mine = st.ex_cluster[exch] == ids.index(plant["cluster"])
        for t, share in zip((last - 1, last), plant["light_touch"], strict=True):
            p[mine & (term == t)] = share
    return np.where(u < p, np.minimum(n_drawn, cap), n_drawn), p, cap


SMALL_CELL_K = 10  # the small-cell threshold the planted cells are below (analytics MIN_CELL)
SMALL_EXCHANGE_N = 7  # participants of the demo's one small exchange
SMALL_COMPARISON_N = 6  # comparison people of physical exchanges who answer the follow-up
SMALL_COMPARISON_MODALITY = 2  # index into MODALITIES: physical


def _plant_small_cells(seed: int, inst: np.ndarray, exch: np.ndarray, comparison: np.ndarray,
                       responded: np.ndarray, st: _Structure) -> dict:
    """Make two groups smaller than the small-cell threshold (k = 10), so that the demo shows
    suppression; changes `inst`, `exch` and `responded` in place and returns truth's
    "small_cells".

    - A small exchange: the exchange with the fewest exchange participants among those with at
      least SMALL_EXCHANGE_N keeps its first SMALL_EXCHANGE_N (by id), who answer pre and post;
      everyone else of it (comparison people too) takes the institution and exchange of another
      participant drawn at random (own stream, so nothing else changes).
    - A small comparison cell: of the comparison people carrying a physical exchange, only the
      first SMALL_COMPARISON_N (by id) answer the follow-up (the model's cell followup x
      physical x comparison arm).

    Deterministic by seed; a program too small to hold a cell records None for it.
    """
    out: dict = {"k": SMALL_CELL_K, "exchange": None, "comparison_followup": None}
    per_ex = np.bincount(exch[~comparison], minlength=len(st.ex_ids))
    cand = np.flatnonzero(per_ex >= SMALL_EXCHANGE_N)
    if len(cand):
        e = int(cand[np.argmin(per_ex[cand])])
        members = np.flatnonzero(exch == e)
        keep = members[~comparison[members]][:SMALL_EXCHANGE_N]
        move = np.setdiff1d(members, keep)
        others = np.flatnonzero(exch != e)
        donor = others[_rng(seed, 2, 1).integers(len(others), size=len(move))]
        inst[move], exch[move] = inst[donor], exch[donor]
        responded[keep, 0] = responded[keep, 1] = True
        out["exchange"] = {"exchange_id": st.ex_ids[e], "participants": len(keep),
                           "pre_post": len(keep), "moved_out": len(move)}
    cell = np.flatnonzero(comparison & (st.ex_modality[exch] == SMALL_COMPARISON_MODALITY))
    if len(cell):
        responded[cell[:SMALL_COMPARISON_N], 2] = True
        responded[cell[SMALL_COMPARISON_N:], 2] = False
        out["comparison_followup"] = {
            "arm": "comparison", "modality": MODALITIES[SMALL_COMPARISON_MODALITY],
            "wave": "followup", "participants": int(min(len(cell), SMALL_COMPARISON_N)),
            "with_pre_and_followup": int(responded[cell[:SMALL_COMPARISON_N], 0].sum())}
    return out


ATTRITION = {"pre": 0.92, "post_intercept": 0.9, "followup_intercept": 0.1, "slope": 1.0,
             "comparison_post": 0.72, "comparison_followup": 0.55}


def _categorical(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw from probabilities `p` for uniforms `u` (vectorised rng.choice)."""
    cum = np.cumsum(p) / np.sum(p)
    return np.minimum(np.searchsorted(cum, u, side="right"), len(p) - 1)


_TS_BASE = _days(_FIRST_MONDAY) * 86_400


def _events(out: Path, seed: int, people: _People, st: _Structure, bad: list[dict],
            tick: Tick) -> int:
    """Write events.csv chunk by chunk: naive local times in school hours; return rows written."""
    cols = ["participant_id", "exchange_id", "occurred_at", "activity", "minutes"]
    with _CsvOut(out / "events.csv", cols) as csv:
        ex_ids, acts = pa.array(st.ex_ids), pa.array(ACTIVITIES)
        n = len(people.inst)
        hour_p = [np.array(w, dtype=float) for w in HOUR_W]
        people.minutes = np.zeros(n)
        people.minutes_full, people.minutes_light = np.zeros(n), np.zeros(n)
        for ci, a in enumerate(range(0, n, CHUNK)):
            b = min(n, a + CHUNK)
            rng = _rng(seed, 3, ci)
            who = np.repeat(np.arange(a, b, dtype=np.int64), people.n_drawn[a:b])
            m = len(who)
            ex = people.exch[who]
            profile = np.where(st.ex_setting[ex] == 1, 2, st.inst_kind[people.inst[who]])
            week = (rng.random(m) * st.ex_weeks[ex]).astype(np.int64)
            u_day, u_hour = rng.random(m), rng.random(m)
            weekday = np.empty(m, np.int64)
            hour = np.empty(m, np.int64)
            for k in range(3):
                mk = profile == k
                weekday[mk] = _categorical(u_day[mk], WEEKDAY_P[k])
                hour[mk] = HOUR_FIRST[k] + _categorical(u_hour[mk], hour_p[k])
            evening = people.teacher[who] & (rng.random(m) < TEACHER_EVENING_SHARE)
            hour[evening] = 19 + rng.integers(0, 3, int(evening.sum()))
            local = ((st.ex_start[ex] + 7 * week + weekday) * 86_400 + hour * 3600
                     + rng.integers(0, 3600, m))
            modality = st.ex_modality[ex]
            u_act = rng.random(m)
            act = np.empty(m, np.int64)
            for k in range(3):
                mk = modality == k
                act[mk] = _categorical(u_act[mk], ACTIVITY_WEIGHTS[k])
            minutes = np.clip(np.rint(ACTIVITY_MEDIAN_MIN[act] * np.exp(rng.normal(0, 0.5, m))),
                              1, 600).astype(np.int16)
            no_minutes = rng.random(m) < 0.04
            act = _thin_sync(act, who, people, st, _rng(seed, 13, ci))
            # A log is ordered by person and time; one int64 key sorts both at once.
            order = np.argsort(who * (1 << 32) + (local - _TS_BASE), kind="stable")
            who, ex, local, act = who[order], ex[order], local[order], act[order]
            minutes, no_minutes = minutes[order], no_minutes[order]
            # light touch: a participant's log keeps its first n_events rows (all drawn above)
            rank = np.arange(len(who)) - np.searchsorted(who, who)
            logged = np.where(no_minutes, 0.0, minutes.astype(float))
            people.minutes_full[a:b] = np.bincount(who - a, weights=logged, minlength=b - a)
            people.minutes_light[a:b] = np.bincount(
                who - a, weights=np.where(rank < people.light_cap[who], logged, 0.0),
                minlength=b - a)
            keep = rank < people.n_events[who]
            who, ex, local, act = who[keep], ex[keep], local[keep], act[keep]
            minutes, no_minutes = minutes[keep], no_minutes[keep]
            t = pa.table({
                "participant_id": people.ids.take(who),
                "exchange_id": ex_ids.take(ex),
                "occurred_at": pa.array(local.astype("datetime64[s]")),
                "activity": acts.take(act),
                "minutes": pa.array(minutes, mask=no_minutes),
            })
            # counted, not drawn: the scale-up truth needs each participant's minutes
            people.minutes[a:b] = np.bincount(who - a, weights=np.where(
                no_minutes, 0.0, minutes.astype(float)), minlength=b - a)
            plants = _event_plants(t, people, st) if ci == 0 else []
            _write_planted(csv, t, plants, bad)
            tick(b - a)
        rows = csv.rows
    return rows


def _event_plants(t: pa.Table, people: _People, st: _Structure) -> list[tuple[int, list, dict]]:
    """Bad event rows, each a copy of a real row with one field broken."""
    n = len(people.inst)
    width = len(people.ids[0].as_py()) - 1
    specs = [
        (11, "participant_id", "reference", f"P{n + 5:0{width}d}",
         "event for an unknown participant"),
        (503, "exchange_id", "reference", f"X{len(st.ex_ids) + 900:03d}",
         "event for an unknown exchange"),
        (2_001, "occurred_at", "timestamp", "2025-02-30 10:15:00",
         "unparseable date (30 February)"),
        (5_007, "participant_id", "reference", f"P{n + 6:0{width}d}",
         "event for an unknown participant"),
        (9_001, "occurred_at", "timestamp", "13/05/2025 9:40", "unparseable date (DD/MM/YYYY)"),
        (20_011, "exchange_id", "reference", "X-UNKNOWN", "event for an unknown exchange"),
    ]
    plants = []
    for after, col, rule, value, why in specs:
        after = min(after, t.num_rows - 1)
        row = t.slice(after, 1).to_pylist()[0]
        row["occurred_at"] = row["occurred_at"].strftime("%Y-%m-%d %H:%M:%S")
        row[col] = value
        plants.append((after, list(row.values()),
                       {"file": "events.csv", "column": col, "rule": rule, "value": value,
                        "why": why}))
    return plants


# Issue 13: scheduling friction. Partnerships with little school-hours overlap hold fewer
# synchronous events: a synchronous event (SYNC_ACTIVITIES) of a participant is relabelled a
# message with probability SCHED_THIN * (SCHED_HOURS - o) / SCHED_HOURS, o the mean overlap
# (hours per school day, analytics.stats.scheduling at its defaults) of the partnerships of
# the participant's institution in its exchange. Its own random stream; minutes stay as drawn.
SYNC_ACTIVITIES = ("video_call", "live_session")
SCHED_THIN = 0.6
SCHED_HOURS = 8.0


def _partnership_overlap(st: _Structure) -> None:
    """`st.overlap`: overlap hours per school day of each partnership over its exchange's
    dates (the two institutions' zones, default school hours)."""
    from analytics.stats.scheduling import overlap_hours

    if not st.partnerships:
        return
    pairs = pd.DataFrame({
        "id": [p["id"] for p in st.partnerships],
        "tz_a": [st.inst_tz[p["a"]] for p in st.partnerships],
        "tz_b": [st.inst_tz[p["b"]] for p in st.partnerships],
        "start_date": pd.to_datetime([_iso(int(st.ex_start[p["exchange"]]))
                                      for p in st.partnerships]),
        "end_date": pd.to_datetime([_iso(int(st.ex_start[p["exchange"]])
                                         + 7 * int(st.ex_weeks[p["exchange"]]) - 1)
                                    for p in st.partnerships])})
    o = overlap_hours(pairs)
    st.overlap = dict(zip(o["id"], o["overlap_hours_per_day"].astype(float), strict=True))


def _side_thin(st: _Structure) -> dict[tuple[int, int], float]:
    """(institution, exchange) -> P(a synchronous event is relabelled a message)."""
    sums: dict[tuple[int, int], list[float]] = {}
    for p in st.partnerships:
        o = st.overlap.get(p["id"], math.nan)
        if not math.isfinite(o):
            continue
        for side in ("a", "b"):
            sums.setdefault((p[side], p["exchange"]), []).append(o)
    return {k: SCHED_THIN * (SCHED_HOURS - min(float(np.mean(v)), SCHED_HOURS)) / SCHED_HOURS
            for k, v in sums.items()}


def _thin_sync(act: np.ndarray, who: np.ndarray, people: _People, st: _Structure,
               rng: np.random.Generator) -> np.ndarray:
    thin = _side_thin(st)
    if not thin or not len(act):
        return act
    codes = people.inst.astype(np.int64) * (len(st.ex_ids) + 1) + people.exch
    key = codes[who]
    keys = np.array([i * (len(st.ex_ids) + 1) + e for i, e in thin], dtype=np.int64)
    vals = np.array(list(thin.values()))
    order = np.argsort(keys)
    pos = np.clip(np.searchsorted(keys[order], key), 0, len(keys) - 1)
    hit = keys[order][pos] == key
    lam = np.where(hit, vals[order][pos], 0.0)
    sync = np.isin(act, [ACTIVITIES.index(a) for a in SYNC_ACTIVITIES])
    u = rng.random(len(act))
    out = act.copy()
    out[sync & (u < lam)] = ACTIVITIES.index("message")
    return out


def _scheduling_truth(st: _Structure, people: _People, k: int = 10) -> dict:
    """The estimand of res_scheduling_model: the OLS slope of E[joint share] on overlap hours
    (adjusted for modality) over partnerships with at least k active participants, E[share]
    from the realised event counts and the planted probabilities."""
    thin = _side_thin(st)
    w = ACTIVITY_WEIGHTS[:, [ACTIVITIES.index(a) for a in SYNC_ACTIVITIES]].sum(axis=1)
    n_ev: dict[tuple[int, int], float] = {}
    n_sync: dict[tuple[int, int], float] = {}
    n_act: dict[tuple[int, int], int] = {}
    active = (~people.comparison) & (people.n_events > 0)
    for i, e, n in zip(people.inst[active], people.exch[active], people.n_events[active],
                       strict=True):
        key = (int(i), int(e))
        n_ev[key] = n_ev.get(key, 0.0) + float(n)
        n_sync[key] = n_sync.get(key, 0.0) + float(n) * w[st.ex_modality[e]] * (
            1 - thin.get(key, 0.0))
        n_act[key] = n_act.get(key, 0) + 1
    rows = []
    for p in st.partnerships:
        ka, kb = (p["a"], p["exchange"]), (p["b"], p["exchange"])
        people_n = n_act.get(ka, 0) + n_act.get(kb, 0)
        ev = n_ev.get(ka, 0.0) + n_ev.get(kb, 0.0)
        o = st.overlap.get(p["id"], math.nan)
        if people_n >= k and ev > 0 and math.isfinite(o):
            rows.append((o, int(st.ex_modality[p["exchange"]]),
                         (n_sync.get(ka, 0.0) + n_sync.get(kb, 0.0)) / ev))
    slope = None
    if len(rows) >= 3:
        r = np.array(rows)
        mods = sorted({int(m) for m in r[:, 1]})
        X = np.column_stack([np.ones(len(r)), r[:, 0],
                             *[(r[:, 1] == m).astype(float) for m in mods[1:]]])
        slope = float(np.linalg.lstsq(X, r[:, 2], rcond=None)[0][1])
    over = [v for v in st.overlap.values() if math.isfinite(v)]
    return {"slope_joint_share_per_overlap_hour": None if slope is None else round(slope, 6),
            "n_partnerships": len(rows), "k": k, "thin": SCHED_THIN, "hours": SCHED_HOURS,
            "sync_activities": list(SYNC_ACTIVITIES),
            "zero_overlap_partnerships": sum(v == 0 for v in over),
            "definition": DEFINITIONS["scheduling"]}


@dataclass
class _ScaleParams:
    instrument: str
    scale: str
    items: tuple[str, ...]
    reverse: tuple[str, ...]
    lo: float
    hi: float
    mu: float
    latent_sd: float
    occasion_sd: float
    item_noise_sd: float
    item_offsets: np.ndarray
    intercept: np.ndarray  # by modality
    dose_slope: float
    comparison_gain: float
    gain_sd: float
    retention: float


def _scale_params(seed: int, instruments: dict) -> list[_ScaleParams]:
    """Effect sizes per scale: defaults per instrument, jittered a little per scale by seed."""
    rng = _rng(seed, 5)
    out = []
    for inst in instruments.values():
        for sc in inst.scales:
            f = (sc.max - sc.min) / 4  # effects are stated for a 1..5 scale
            k = len(sc.items)
            latent_sd, occ = LATENT_SD * f, OCCASION_SD * f
            rho1 = TARGET_ALPHA / (k - (k - 1) * TARGET_ALPHA)
            var_e = max((latent_sd**2 + occ**2) * (1 / rho1 - 1) - 1 / 12, 0.05 * f * f)
            offsets = rng.uniform(-0.3, 0.3, k) * f
            offsets -= offsets.mean()
            base = BASE_GAIN.get(inst.id, DEFAULT_BASE_GAIN) * f * rng.uniform(0.85, 1.15)
            mult = np.array(MODALITY_MULT.get(inst.id, DEFAULT_MODALITY_MULT))
            out.append(_ScaleParams(
                inst.id, sc.id, sc.items, sc.reverse, sc.min, sc.max,
                mu=sc.min + (sc.max - sc.min) * rng.uniform(0.45, 0.58),
                latent_sd=latent_sd, occasion_sd=occ, item_noise_sd=math.sqrt(var_e),
                item_offsets=offsets, intercept=base * mult,
                dose_slope=DOSE_SLOPE * f * rng.uniform(0.8, 1.2),
                comparison_gain=COMPARISON_GAIN * f, gain_sd=GAIN_SD * f,
                retention=float(rng.uniform(0.55, 0.8)),
            ))
    return out


def _expected_score(theta: np.ndarray, sp: _ScaleParams) -> np.ndarray:
    """E[scale score | latent]: mean over items of E[clip(round(latent + offset + noise))].

    For an integer answer on lo..hi, E[x] = lo + sum_{c=lo}^{hi-1} P(latent + offset + e > c + .5);
    reverse coding is undone by the scorer, and items missing at random do not change it.
    """
    cuts = np.arange(sp.lo, sp.hi) + 0.5
    z = (theta[..., None, None] + sp.item_offsets[:, None] - cuts) / sp.item_noise_sd
    return sp.lo + ndtr(z).sum(axis=-1).mean(axis=-1)


class _Acc:
    """Sums by scale and group, accumulated over chunks, for truth.json."""

    def __init__(self, n_scales: int) -> None:
        shape = (n_scales, len(GROUPS))
        self.z = {k: np.zeros(shape) for k in (
            "gain", "n", "gain_pp", "d_pp", "n_pp", "d_pf", "n_pf", "d_ap", "d_af",
            "m_pre", "n_pre", "m_post", "n_post", "m_fu", "n_fu")}

        # Dose–response and setting targets (issue 13): over exchange participants who answered
        # pre and post, the normal equations of E[score(post) - score(pre)] on
        # [1, log1p(n_events), blended, physical, extracurricular], and the expected change by
        # setting. Sums of quantities the simulation already draws: no new random numbers.
        self.dose_xx = np.zeros((n_scales, len(DOSE_DESIGN), len(DOSE_DESIGN)))
        self.dose_xy = np.zeros((n_scales, len(DOSE_DESIGN)))
        self.setting_d = np.zeros((n_scales, len(SETTINGS)))
        self.setting_n = np.zeros((n_scales, len(SETTINGS)))

    def add_dose(self, s: int, n_events: np.ndarray, modality: np.ndarray, setting: np.ndarray,
                 diff: np.ndarray) -> None:
        X = np.column_stack([np.ones(len(diff)), np.log1p(n_events), modality == 1,
                             modality == 2, setting == 1]).astype(float)
        self.dose_xx[s] += X.T @ X
        self.dose_xy[s] += X.T @ diff
        self.setting_d[s] += np.bincount(setting, weights=diff, minlength=len(SETTINGS))
        self.setting_n[s] += np.bincount(setting, minlength=len(SETTINGS))

    def dose_slope(self, s: int) -> float | None:
        if np.linalg.matrix_rank(self.dose_xx[s]) < len(DOSE_DESIGN):
            return None
        return float(np.linalg.solve(self.dose_xx[s], self.dose_xy[s])[1])

    def add(self, key: str, s: int, group: np.ndarray, values: np.ndarray | None = None) -> None:
        w = None if values is None else values
        self.z[key][s] += np.bincount(group, weights=w, minlength=len(GROUPS))[: len(GROUPS)]

    def mean(self, key: str, n: str, s: int) -> dict[str, float | None]:
        return {g: (round(float(self.z[key][s, j] / self.z[n][s, j]), 6) if self.z[n][s, j]
                    else None) for j, g in enumerate(GROUPS)}

    def count(self, n: str, s: int) -> dict[str, int]:
        return {g: int(self.z[n][s, j]) for j, g in enumerate(GROUPS)}

    equity: _EquityAcc | None = None


# ---------------------------------------------------------------------------------------------
# Issue 13: the one-sided partnerships and the equity groups' truth
# ---------------------------------------------------------------------------------------------

ONE_SIDED_N = 3  # partnerships planted one-sided: side b's participants gain nothing
EQUITY_LEVELS = {
    "gender": ("female", "male", "non-binary", "not reported"),
    "age_band": ("12 or under", "13–15", "16–18", "19–24", "25 or over"),
    "connectivity": CONNECTIVITY,
    "income_group": ("low", "lower-middle", "upper-middle", "high"),
}
CONNECTIVITY_EVENT_RATE = (0.7, 0.9, 1.0)  # the event-rate factor by connectivity (low..high)


def _plant_one_sided(people: _People, st: _Structure) -> None:
    """Make `ONE_SIDED_N` partnerships one-sided: side b's exchange participants (institution b
    in the partnership's exchange) get no latent gain on any scale, side a keeps its own.

    Chosen so that the plant touches no other partnership and both sides are large: side b's
    institution and exchange are in no other partnership, and among such partnerships the ones
    with the most exchange participants on their smaller side (ties by id). Sets
    `people.flat_gain` and `people.one_sided` (truth's "reciprocity"); no random draws."""
    treated = ~people.comparison
    size = {}
    for i, e in zip(people.inst[treated], people.exch[treated], strict=True):
        size[(int(i), int(e))] = size.get((int(i), int(e)), 0) + 1
    seen: dict[tuple[int, int], int] = {}
    for p in st.partnerships:
        for side in ("a", "b"):
            key = (p[side], p["exchange"])
            seen[key] = seen.get(key, 0) + 1
    cand = [p for p in st.partnerships if seen[(p["b"], p["exchange"])] == 1]
    cand.sort(key=lambda p: (-min(size.get((p["a"], p["exchange"]), 0),
                                  size.get((p["b"], p["exchange"]), 0)), p["id"]))
    people.flat_gain = np.zeros(len(people.inst), dtype=bool)
    for p in cand[:ONE_SIDED_N]:
        flat = treated & (people.inst == p["b"]) & (people.exch == p["exchange"])
        people.flat_gain |= flat
        people.one_sided.append({
            "partnership_id": p["id"], "exchange_id": st.ex_ids[p["exchange"]],
            "institution_a": st.inst_ids[p["a"]], "institution_b": st.inst_ids[p["b"]],
            "gaining_side": "a", "flat_side": "b",
            "participants_a": size.get((p["a"], p["exchange"]), 0),
            "participants_b": int(flat.sum())})


def _equity_codes(people: _People, st: _Structure, s: slice) -> dict[str, np.ndarray]:
    """Each person's level (index into `EQUITY_LEVELS`) per equity grouping, as the warehouse
    derives it: the home institution's connectivity and income group, gender, and the age band
    at the start of the exchange (year of its start date − birth year)."""
    inst, ex = people.inst[s], people.exch[s]
    income = np.array([EQUITY_LEVELS["income_group"].index(c.income) for c in COUNTRIES])
    start_year = np.array([int(_iso(int(d))[:4]) for d in st.ex_start])[ex]
    age = start_year - people.birth_year[s]
    band = np.searchsorted(np.array([12, 15, 18, 24]), age, side="left")
    return {"gender": people.gender[s].astype(np.int64), "age_band": band,
            "connectivity": st.inst_conn[inst].astype(np.int64),
            "income_group": income[st.inst_country[inst]]}


class _EquityAcc:
    """Sums of the expected observed gain post − pre of exchange participants who answered
    both, by scale and equity group, accumulated over chunks."""

    def __init__(self, n_scales: int) -> None:
        self.sum = {g: np.zeros((n_scales, len(lv))) for g, lv in EQUITY_LEVELS.items()}
        self.n = {g: np.zeros((n_scales, len(lv))) for g, lv in EQUITY_LEVELS.items()}

    def add(self, s: int, codes: dict[str, np.ndarray], mask: np.ndarray, d: np.ndarray) -> None:
        for g, lv in EQUITY_LEVELS.items():
            self.sum[g][s] += np.bincount(codes[g][mask], weights=d[mask], minlength=len(lv))
            self.n[g][s] += np.bincount(codes[g][mask], minlength=len(lv))


def _equity_truth(people: _People, st: _Structure, params: list[_ScaleParams],
                  acc: _Acc) -> dict:
    """truth.json "equity": per grouping and level, the expected observed gain per scale of
    the exchange participants who answered pre and post, and the expected drop-out (mean of
    1 − P(answer post)) of those who answered pre."""
    codes = _equity_codes(people, st, slice(None))
    pre = ~people.comparison & people.responded[:, 0]
    out: dict = {}
    eq = acc.equity
    for g, lv in EQUITY_LEVELS.items():
        n_pre = np.bincount(codes[g][pre], minlength=len(lv))
        drop = np.bincount(codes[g][pre], weights=1 - people.p_post[pre], minlength=len(lv))
        out[g] = {}
        for j, level in enumerate(lv):
            gains = {}
            for s, sp in enumerate(params):
                n = eq.n[g][s, j] if eq is not None else 0
                gains[f"{sp.instrument}.{sp.scale}"] = (
                    round(float(eq.sum[g][s, j] / n), 6) if n else None)
            out[g][level] = {
                "n_pre": int(n_pre[j]),
                "expected_dropout": round(float(drop[j] / n_pre[j]), 6) if n_pre[j] else None,
                "expected_observed_gain": gains}
    return out


def _cluster_effects(seed: int, params: list[_ScaleParams], n_exchanges: int,
                     n_institutions: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per scale: the exchange level, institution level and exchange gain effects (normal, sd
    `EXCHANGE_SD`, `INSTITUTION_SD`, `EXCHANGE_GAIN_SD` on a 1..5 scale), from a stream of their
    own so that chunking and the other draws do not change them."""
    rng = _rng(seed, 9)
    out = []
    for sp in params:
        f = (sp.hi - sp.lo) / 4
        out.append((rng.normal(0, EXCHANGE_SD * f, n_exchanges),
                    rng.normal(0, INSTITUTION_SD * f, n_institutions),
                    rng.normal(0, EXCHANGE_GAIN_SD * f, n_exchanges)))
    return out


def _offset_strings(local: np.ndarray, tz_ix: np.ndarray, zones: list[str]) -> np.ndarray:
    """'+HH:MM' UTC offsets of naive local times (seconds) in their zones, DST-aware."""
    off = np.zeros(len(local), dtype=np.int64)
    for z in np.unique(tz_ix):
        m = tz_ix == z
        loc = pd.DatetimeIndex(local[m].astype("datetime64[s]"))
        utc = loc.tz_localize(zones[z], ambiguous=np.zeros(int(m.sum()), dtype=bool),
                              nonexistent="shift_forward").tz_convert("UTC").tz_localize(None)
        off[m] = ((loc - utc).total_seconds().to_numpy() // 60).astype(np.int64)
    uniq, inv = np.unique(off, return_inverse=True)
    text = np.array([f"{'+' if o >= 0 else '-'}{abs(o) // 60:02d}:{abs(o) % 60:02d}" for o in uniq])
    return text[inv]


def _responses(out: Path, seed: int, people: _People, st: _Structure, params: list[_ScaleParams],
               bad: list[dict], tick: Tick) -> tuple[int, _Acc]:
    """Write responses.csv (wide, one row per participant and wave); accumulate the truth."""
    items = [i for sp in params for i in sp.items]
    col_of = {i: j for j, i in enumerate(items)}
    cols = ["participant_id", "exchange_id", "wave", "submitted_at", *items]
    with _CsvOut(out / "responses.csv", cols) as csv:
        ex_ids, waves = pa.array(st.ex_ids), pa.array(list(WAVES))
        zones = sorted(set(st.inst_tz))
        inst_tz_ix = np.array([zones.index(z) for z in st.inst_tz])
        acc = _Acc(len(params))
        n = len(people.inst)
        rho = GENERAL_FACTOR_SHARE
        fx = _cluster_effects(seed, params, len(st.ex_ids), len(st.inst_ids))
        eq = _EquityAcc(len(params))
        acc.equity = eq
        for ci, a in enumerate(range(0, n, CHUNK)):
            b = min(n, a + CHUNK)
            nn = b - a
            rng = _rng(seed, 4, ci)
            grp = people.group[a:b].astype(np.int64)
            treated = grp < 3
            mod = np.minimum(grp, 2)
            dose = np.minimum(people.n_events[a:b], DOSE_CAP) / 10
            resp = people.responded[a:b]
            pi, wi = np.nonzero(resp)  # participant-major, waves in order
            n_rows = len(pi)
            ex = people.exch[a:b]
            dif_person = _dif_people(st, ex)  # answers in the planted item's language
            start = st.ex_start[ex]
            end = start + 7 * st.ex_weeks[ex] - 1
            day = np.stack([start - rng.integers(0, 14, nn), end + rng.integers(1, 22, nn),
                            end + 120 + rng.integers(0, 61, nn)], axis=1)
            local = day * 86_400 + rng.integers(8 * 3600, 21 * 3600, (nn, 3))
            g = rng.normal(size=nn)
            vals = np.zeros((n_rows, len(items)), dtype=np.int16)
            pp, pf = resp[:, 0] & resp[:, 1], resp[:, 0] & resp[:, 2]
            eq_codes = _equity_codes(people, st, slice(a, b))
            for s, sp in enumerate(params):
                z, u = rng.normal(size=nn), rng.normal(size=nn)
                ex_lvl, inst_lvl, ex_gain = fx[s]
                theta0 = (sp.mu + sp.latent_sd * (math.sqrt(rho) * g + math.sqrt(1 - rho) * z)
                          + ex_lvl[ex] + inst_lvl[people.inst[a:b]])
                delta = np.where(treated, sp.intercept[mod] + sp.dose_slope * dose + sp.gain_sd * u
                                 + ex_gain[ex], sp.comparison_gain + sp.gain_sd / 2 * u)
                if people.flat_gain is not None:  # the one-sided plant: this side gains nothing
                    delta = np.where(people.flat_gain[a:b], 0.0, delta)
                theta = (np.stack([theta0, theta0 + delta, theta0 + sp.retention * delta], axis=1)
                         + rng.normal(0, sp.occasion_sd, (nn, 3)))
                e = _expected_score(theta, sp)
                dif = _dif_shift(sp)
                if dif is not None and dif_person.any():
                    e[dif_person] = _expected_score(theta[dif_person], replace(
                        sp, item_offsets=sp.item_offsets + dif))
                acc.add("gain", s, grp, delta)
                acc.add("n", s, grp)
                acc.add("gain_pp", s, grp[pp], delta[pp])
                acc.add("d_pp", s, grp[pp], e[pp, 1] - e[pp, 0])
                acc.add("n_pp", s, grp[pp])
                tpp = pp & treated
                acc.add_dose(s, people.n_events[a:b][tpp], mod[tpp],
                             st.ex_setting[ex][tpp].astype(np.int64),
                             e[tpp, 1] - e[tpp, 0])
                acc.add("d_pf", s, grp[pf], e[pf, 2] - e[pf, 0])
                eq.add(s, eq_codes, pp & treated, e[:, 1] - e[:, 0])
                acc.add("n_pf", s, grp[pf])
                # every participant of the group, responding or not (the MAR/MNAR target)
                acc.add("d_ap", s, grp, e[:, 1] - e[:, 0])
                acc.add("d_af", s, grp, e[:, 2] - e[:, 0])
                for w, key in enumerate(("pre", "post", "fu")):
                    r = resp[:, w]
                    acc.add(f"m_{key}", s, grp[r], e[r, w])
                    acc.add(f"n_{key}", s, grp[r])
                k = len(sp.items)
                x = np.rint(theta[pi, wi][:, None] + sp.item_offsets
                            + rng.normal(0, sp.item_noise_sd, (n_rows, k)))
                if dif is not None:
                    x[dif_person[pi]] += dif
                x = np.clip(x, sp.lo, sp.hi)
                rev = np.array([i in sp.reverse for i in sp.items])
                x[:, rev] = sp.lo + sp.hi - x[:, rev]
                vals[:, [col_of[i] for i in sp.items]] = x
            missing = rng.random((n_rows, len(items))) < MISSING_ITEM_SHARE
            inst = people.inst[a:b][pi]
            loc = local[pi, wi]
            stamp = np.char.add(np.datetime_as_string(loc.astype("datetime64[s]"), unit="s"),
                                _offset_strings(loc, inst_tz_ix[inst], zones))
            plants = []
            if ci == 0:
                plants = _response_plants(vals, missing, stamp, params, people, bad)
            data = {
                "participant_id": people.ids.take(a + pi), "exchange_id": ex_ids.take(ex[pi]),
                "wave": waves.take(wi), "submitted_at": pa.array(stamp),
            }
            for j, item in enumerate(items):
                data[item] = pa.array(vals[:, j], mask=missing[:, j])
            t = pa.table(data)
            if plants:
                row = t.slice(plants[0][0], 1).to_pylist()[0]
                row["participant_id"] = plants[0][1][0]
                plants = [(plants[0][0], list(row.values()), plants[0][2])]
            _write_planted(csv, t, plants, bad)
            tick(nn)
        rows = csv.rows
    return rows, acc


def _dif_people(st: _Structure, ex: np.ndarray) -> np.ndarray:
    """Whose answers carry the planted non-invariant item (`DIF_PLANT`): those of exchanges in
    its language (the survey's language defaults to the exchange's)."""
    if not DIF_PLANT or not st.ex_language:
        return np.zeros(len(ex), dtype=bool)
    return np.array(st.ex_language, dtype=object)[ex] == DIF_PLANT["language"]


def _dif_shift(sp: _ScaleParams) -> np.ndarray | None:
    """Per-item shift of the planted non-invariant item for this scale, None if not its scale."""
    if not DIF_PLANT or DIF_PLANT["item"] not in sp.items:
        return None
    return np.array([DIF_PLANT["shift"] if i == DIF_PLANT["item"] else 0.0 for i in sp.items])


def _response_plants(vals: np.ndarray, missing: np.ndarray, stamp: np.ndarray,
                     params: list[_ScaleParams], people: _People,
                     bad: list[dict]) -> list[tuple[int, list, dict]]:
    """Break a few cells of the first chunk in place; return one extra row to plant.

    The extra row (an unknown participant) is planted after every broken cell, so a broken
    cell in data row r (0-based) is file row r + 2.
    """
    n_rows = len(vals)
    items = [i for sp in params for i in sp.items]
    lo_of = {i: sp.lo for sp in params for i in sp.items}
    hi_of = {i: sp.hi for sp in params for i in sp.items}
    # Column of the first item with the narrowest range, of the widest, and the second column.
    j_small = min(range(len(items)), key=lambda j: (hi_of[items[j]] - lo_of[items[j]], j))
    j_large = max(range(len(items)), key=lambda j: (hi_of[items[j]] - lo_of[items[j]], -j))
    j_lo = 1 if len(items) > 1 else 0
    breaks = [
        (10, j_small, int(hi_of[items[j_small]] + 4), "Likert value far above the item's maximum"),
        (25, j_large, int(hi_of[items[j_large]] + 1), "Likert value one above the item's maximum"),
        (40, j_lo, int(lo_of[items[j_lo]] - 1), "Likert value below the item's minimum"),
    ]
    for r, j, value, why in breaks:
        r = min(r, n_rows - 1)
        vals[r, j], missing[r, j] = value, False
        bad.append({"file": "responses.csv", "row": r + 2, "column": items[j], "rule": "range",
                    "value": str(value),
                    "why": f"{why} ({lo_of[items[j]]:g}..{hi_of[items[j]]:g})"})
    r = min(55, n_rows - 1)
    stamp[r] = "31.04.2025 14:05"
    bad.append({"file": "responses.csv", "row": r + 2, "column": "submitted_at",
                "rule": "timestamp", "value": stamp[r], "why": "unparseable date (31 April)"})
    n = len(people.inst)
    width = len(people.ids[0].as_py()) - 1
    pid = f"P{n + 7:0{width}d}"
    after = min(70, n_rows - 1)
    return [(after, [pid], {"file": "responses.csv", "column": "participant_id",
                            "rule": "reference", "value": pid,
                            "why": "survey answers of an unknown participant"})]


def generate_demo(out: Path, *, participants: int = 10_000, seed: int = 7,
                  progress: bool = True) -> dict:
    """Write a demo program of `participants` people into folder `out`; return its truth.

    The same seed and size always give byte-identical files. The returned dict is also written
    to `out/truth.json`: the simulated effects (see the module docstring and its "definitions"),
    the rows written per file, and the bad rows planted on purpose (file, row with header = 1,
    column, rule) that the loader must reject.

    Example: ``generate_demo(Path("/tmp/demo"), participants=500, progress=False)``
    """
    if not isinstance(participants, int | np.integer) or participants < 100:
        raise ValueError(f"participants must be an integer of at least 100, got {participants!r}")
    participants = int(participants)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    instruments = surveys.load_instruments()
    if not instruments:
        raise ValueError("no survey instruments found in surveys/")
    params = _scale_params(seed, instruments)
    bad: list[dict] = []
    with _Progress(progress) as prog:
        with prog.task("program", 1) as tick:
            st, rows = _structure(out, seed, participants)
            _partnership_overlap(st)
            tick()
        with prog.task("participants.csv", participants) as tick:
            people = _participants(out, seed, participants, st, bad, tick)
        with prog.task("events.csv", participants) as tick:
            rows["events.csv"] = _events(out, seed, people, st, bad, tick)
        with prog.task("responses.csv", participants) as tick:
            rows["responses.csv"], acc = _responses(out, seed, people, st, params, bad, tick)
    rows["participants.csv"] = people.rows_written
    truth = _truth(seed, participants, st, people, params, acc, rows, bad)
    (out / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n",
                                    encoding="utf-8")
    return truth


DEFINITIONS = {
    "score": "scale score = mean of the answered items of the scale after reverse coding "
             "(reverse-coded item: min + max - answer), on the instrument's raw scale",
    "group": "modality of the participant's exchange (virtual, blended, physical), or "
             "'comparison' for participants with comparison=true (surveys, no events)",
    "waves": "pre: 0-13 days before the exchange starts; post: 1-21 days after it ends; "
             "followup: 120-180 days after it ends; local times 08:00-21:00, written with the "
             "institution's UTC offset",
    "comparison": "comparison participants answer the surveys of an exchange of their own "
                  "institution, on its dates, and log no events",
    "n_events": "number of valid rows of the participant in events.csv (planted bad rows excluded)",
    "dose": f"min(n_events, {DOSE_CAP}) / 10",
    "latent_gain": "delta_i = gain_intercept[modality] + dose_slope_per_10_events * dose_i "
                   "+ N(0, gain_sd) + b_exchange; comparison group: comparison_gain + "
                   "N(0, gain_sd / 2); b_exchange ~ N(0, exchange_gain_sd), one per exchange",
    "latent_by_wave": "pre = theta0_i, post = theta0_i + delta_i, followup = theta0_i + "
                      "retention * delta_i, each plus N(0, occasion_sd); theta0_i = "
                      "latent_pre_mean + latent_sd * (sqrt(general_factor_share) * g_i + "
                      "sqrt(1 - general_factor_share) * z_i,scale) + u_exchange + "
                      "u_institution; u_exchange ~ N(0, exchange_sd) per exchange (its "
                      "comparison class too), u_institution ~ N(0, institution_sd) per "
                      "institution",
    "answer": "clip(round(latent_wave + item_offset + N(0, item_noise_sd)), min, max); "
              "reverse-coded items are written as min + max - answer; "
              f"{MISSING_ITEM_SHARE:.0%} of answers empty at random",
    "true_mean_gain": "mean of delta_i over all participants of the group (responding or not)",
    "true_mean_gain_completers": "mean of delta_i over the group's participants who answered "
                                 "both pre and post",
    "expected_observed_diff": "mean over the group's participants who answered both waves of "
                              "E[score(wave) - score(pre)], integrating item noise, rounding and "
                              "clipping given the realised latents (what a paired pre/post "
                              "comparison of scale scores should estimate)",
    "expected_observed_diff_all": "mean over EVERY participant of the group, responding or not, "
                                  "of E[score(wave) - score(pre)] (as expected_observed_diff, "
                                  "same integration): the all-participants estimand on the "
                                  "score scale, which completers-only estimates miss when "
                                  "dropout depends on engagement",
    "dose_response": "effects.<scale>.dose_response.slope_log1p_events: the OLS slope on "
                     "log1p(n_events) of E[score(post) - score(pre)] (as expected_observed_diff) "
                     "over exchange participants who answered pre and post, adjusted for the "
                     "exchange's modality and setting (change ~ log1p(n_events) + modality + "
                     "setting): what res_dose_response (measure events) estimates. The gain "
                     "rises with dose by construction (latent_gain: dose_slope_per_10_events), "
                     "linear in capped events, so the log-scale slope is its best log-linear "
                     "summary, not a parameter of the simulation",
    "expected_observed_diff_by_setting": "as expected_observed_diff, exchange participants by "
                                         "their exchange's setting (curricular, "
                                         "extracurricular); the simulation plants no setting "
                                         "effect on the gain beyond fewer events in "
                                         "extracurricular exchanges",
    "estimates_and_targets": "res_prepost diff (completers' paired mean change, group_by "
                             "overall/modality) targets expected_observed_diff.post_minus_pre; "
                             "res_sensitivity method 'completers' targets expected_observed_diff"
                             " of its wave; res_sensitivity 'ipw' (inverse-probability weights "
                             "on engagement and pre score, valid under MAR given them) and "
                             "'delta' at delta = 0 target expected_observed_diff_all; the mixed "
                             "model's contrast[W-pre] (res_longitudinal, every wave, MAR given "
                             "wave x modality x arm) is on the score scale too and targets "
                             "expected_observed_diff_all only as far as its terms explain "
                             "dropout; true_mean_gain and true_mean_gain_completers are latent "
                             "(before rounding and clipping to the answer range)",
    "expected_observed_mean": "mean over the group's respondents of the wave of E[score]",
    "retention": "true share of the latent gain still present at follow-up",
    "attrition": "P(answer pre) = pre; P(answer post) = sigmoid(post_intercept + slope * z), "
                 "P(answer followup) = sigmoid(followup_intercept + slope * z), z = log1p(n_events)"
                 " standardised over non-comparison participants; comparison group: fixed rates",
    "small_cells": "groups planted below the small-cell threshold k so that suppression shows: "
                   "one exchange with fewer than k participants (all answering pre and post) "
                   "and fewer than k comparison people of physical exchanges answering the "
                   "follow-up",
    "non_invariant_item": "measurement_invariance.planted: answers to this item by participants "
                          "of exchanges in this language (ISO 639-1) are written shift points "
                          "higher before clipping (an intercept shift: differential item "
                          "functioning); every other item is invariant across languages",
    "partnership_duration": "days from started_on to ended_on ~ Weibull(shape, scale) with the "
                            "scale of its kind (domestic: both institutions in one country); "
                            "ended_on empty when the end falls after as_of (censored). Hazards "
                            "are proportional: cross-border / domestic = "
                            "hazard_ratio_cross_border = (scale_domestic / scale_cross)^shape, "
                            "with no modality or cluster effect, so the ratio adjusted for them "
                            "is the same",
    "bad_rows": "rows planted to be rejected: file, row (header = row 1), column, rule as named "
                "by etl.rules / the loader (reference, timestamp, range)",
    "reciprocity": f"reciprocity.one_sided: {ONE_SIDED_N} partnerships whose side b (exchange "
                   "participants of institution_b in the partnership's exchange) has no "
                   "latent gain on any scale (delta_i = 0) while side a keeps its own; side "
                   "b's institution and exchange are in no other partnership. Unplanted "
                   "partnerships may still look one-sided by chance",
    "scheduling": "scheduling.slope_joint_share_per_overlap_hour: a synchronous event "
                  "(sync_activities) of a participant is relabelled a message with probability "
                  "thin * (hours - o) / hours, o the mean school-hours overlap (hours per school "
                  "day, 08:00-16:00 Mon-Fri, the exchange's dates, DST included) of the "
                  "partnerships of the participant's institution in its exchange; the slope is "
                  "the OLS slope of the expected joint share (synchronous / all events of both "
                  "sides, from the realised event counts) on overlap, adjusted for modality, "
                  "over partnerships with at least k active participants: what "
                  "res_scheduling_model estimates. Minutes stay as drawn",
    "equity": "equity.<grouping>.<level>: expected_observed_gain per instrument.scale = mean "
              "over the level's exchange participants who answered pre and post of "
              "E[score(post) - score(pre)] (as expected_observed_diff); expected_dropout = "
              "mean over those who answered pre of 1 - P(answer post). Groupings as the "
              "warehouse derives them: gender, age band at the exchange's start (year of its "
              "start date - birth year), the home institution's connectivity and income group. "
              "Gaps are not planted directly: connectivity scales the event rate (low 0.7, "
              "medium 0.9, high 1.0), and events raise the gain (dose) and the chance to answer "
              "post; income group shifts the connectivity mix; gender and age have no effect "
              "of their own. Minutes per participant have no closed-form truth here",
}


def _truth(seed: int, n: int, st: _Structure, people: _People, params: list[_ScaleParams],
           acc: _Acc, rows: dict[str, int], bad: list[dict]) -> dict:
    """The truth.json document."""
    def r3(x: float) -> float:
        return round(float(x), 6)

    effects: dict[str, dict] = {}
    for s, sp in enumerate(params):
        effects.setdefault(sp.instrument, {})[sp.scale] = {
            "items": list(sp.items), "reverse": list(sp.reverse), "min": sp.lo, "max": sp.hi,
            "latent_pre_mean": r3(sp.mu), "latent_sd": r3(sp.latent_sd),
            "general_factor_share": GENERAL_FACTOR_SHARE, "occasion_sd": r3(sp.occasion_sd),
            "item_noise_sd": r3(sp.item_noise_sd),
            "item_offsets": {i: r3(o) for i, o in zip(sp.items, sp.item_offsets, strict=False)},
            "design_alpha": TARGET_ALPHA,
            "gain_intercept": {m: r3(v) for m, v in zip(MODALITIES, sp.intercept, strict=False)},
            "dose_slope_per_10_events": r3(sp.dose_slope),
            "comparison_gain": r3(sp.comparison_gain), "gain_sd": r3(sp.gain_sd),
            "exchange_sd": r3(EXCHANGE_SD * (sp.hi - sp.lo) / 4),
            "institution_sd": r3(INSTITUTION_SD * (sp.hi - sp.lo) / 4),
            "exchange_gain_sd": r3(EXCHANGE_GAIN_SD * (sp.hi - sp.lo) / 4),
            "comparison_gain_sd": r3(sp.gain_sd / 2), "retention": r3(sp.retention),
            "true_mean_gain": acc.mean("gain", "n", s),
            "true_mean_gain_completers": acc.mean("gain_pp", "n_pp", s),
            "expected_observed_diff": {"post_minus_pre": acc.mean("d_pp", "n_pp", s),
                                       "followup_minus_pre": acc.mean("d_pf", "n_pf", s)},
            "expected_observed_diff_all": {"post_minus_pre": acc.mean("d_ap", "n", s),
                                           "followup_minus_pre": acc.mean("d_af", "n", s)},
            "expected_observed_mean": {"pre": acc.mean("m_pre", "n_pre", s),
                                       "post": acc.mean("m_post", "n_post", s),
                                       "followup": acc.mean("m_fu", "n_fu", s)},
            "n": {"all": acc.count("n", s), "pre_post": acc.count("n_pp", s),
                  "pre_followup": acc.count("n_pf", s)},
        }
        slope = acc.dose_slope(s)
        effects[sp.instrument][sp.scale]["dose_response"] = {
            "slope_log1p_events": None if slope is None else r3(slope),
            "n_pre_post": int(acc.dose_xx[s][0, 0]),
        }
        effects[sp.instrument][sp.scale]["expected_observed_diff_by_setting"] = {
            "post_minus_pre": {st_: (r3(acc.setting_d[s, j] / acc.setting_n[s, j])
                                     if acc.setting_n[s, j] else None)
                               for j, st_ in enumerate(SETTINGS)}}
    treated = ~people.comparison
    active = treated & (people.n_events > 0)
    dom = [p for p in st.partnerships if p["domestic"]]
    cross = [p for p in st.partnerships if not p["domestic"]]

    def _dur(ps: list[dict]) -> dict:
        return {"n": len(ps), "censored": sum(p["censored"] for p in ps),
                "mean_observed_days": r3(np.mean([p["days"] for p in ps])) if ps else None,
                "weibull_scale_days": r3(PARTNERSHIP_SCALE_DAYS[
                    "domestic" if ps is dom else "cross_border"]),
                "weibull_shape": PARTNERSHIP_SHAPE}

    return {
        "generator": "etl.demo", "truth_version": 1, "seed": seed, "participants": n,
        "as_of": AS_OF.isoformat(), "definitions": DEFINITIONS,
        "rows_written": dict(sorted(rows.items())),
        "counts": {
            "clusters": len(CLUSTERS), "countries": len({int(c) for c in st.inst_country}),
            "institutions": len(st.inst_ids), "exchanges": len(st.ex_ids),
            "partnerships": len(st.partnerships), "participants": n,
            "comparison": int(people.comparison.sum()), "teachers": int(people.teacher.sum()),
            "active_participants": int(active.sum()),
            "events_valid": int(people.n_events.sum()),
            "events_per_active_participant": r3(people.n_events.sum() / max(active.sum(), 1)),
            "responses_by_wave": {w: int(people.responded[:, k].sum())
                                  for k, w in enumerate(WAVES)},
            "participants_by_group": {g: int((people.group == j).sum())
                                      for j, g in enumerate(GROUPS)},
        },
        "dose": {"cap": DOSE_CAP, "per_events": 10, "definition": DEFINITIONS["dose"]},
        "attrition": ATTRITION,
        "partnerships": {"domestic": _dur(dom), "cross_border": _dur(cross),
                         "hazard_ratio_cross_border": PARTNERSHIP_HAZARD_RATIO,
                         "definition": DEFINITIONS["partnership_duration"]},
        "effects": effects,
        "bad_rows": bad,
        "eur_rates": EUR_RATES,
        "small_cells": people.small_cells,
        "measurement_invariance": {"planted": dict(DIF_PLANT) if DIF_PLANT else None},
        "reciprocity": {"one_sided": people.one_sided},
        "cost": st.cost,
        "equity": _equity_truth(people, st, params, acc),
        "scheduling": _scheduling_truth(st, people),
        "scale": _scale_truth(people, st),
    }


def _scale_truth(people: _People, st: _Structure) -> dict:
    """Issue 13, scale-up vs scale-in: per cluster and term (calendar half-year of the
    exchange's start) the participants reached (non-comparison, at least one event), their
    institutions and countries, and the share reaching the meaningful dose (5 events or 300
    minutes), counted from the generator's own arrays (light-touch participants counted with
    the events they kept). The clusters whose last term-on-term change grows in breadth
    without growing in depth are listed under "scaling_up_only"; "planted" holds SCALE_PLANT's
    clusters (`_scale_planted`), the effect the dashboard's quadrant must recover."""
    reached = ~people.comparison & (people.n_events > 0)
    ex = people.exch[reached]
    start = (st.ex_start[ex].astype("datetime64[D]"))
    year = start.astype("datetime64[Y]").astype(int) + 1970
    month = start.astype("datetime64[M]").astype(int) % 12 + 1
    term = np.array([f"{y}-H{1 if m <= 6 else 2}" for y, m in zip(year, month, strict=True)])
    cl = np.array([CLUSTERS[c][0] for c in st.ex_cluster[ex]])
    inst = people.inst[reached]
    dosed = (people.n_events[reached] >= 5) | (people.minutes[reached] >= 300)
    rows: dict[str, dict] = {}
    for c, t in sorted(set(zip(cl, term, strict=True))):
        m = (cl == c) & (term == t)
        rows.setdefault(c, {})[t] = {
            "participants": int(m.sum()), "institutions": len(set(inst[m].tolist())),
            "countries": len({int(st.inst_country[i]) for i in inst[m]}),
            "dosed": int(dosed[m].sum()), "share_dosed": round(float(dosed[m].mean()), 6)}
    up_only = []
    for c, terms in rows.items():
        ts = sorted(terms)
        if len(ts) < 2:
            continue
        a, b = terms[ts[-2]], terms[ts[-1]]
        y0, h0 = int(ts[-2][:4]), int(ts[-2][-1])
        if (int(ts[-1][:4]) * 2 + int(ts[-1][-1])) != y0 * 2 + h0 + 1:
            continue
        if b["participants"] > a["participants"] and b["share_dosed"] <= a["share_dosed"]:
            up_only.append({"cluster": c, "previous_term": ts[-2], "term": ts[-1],
                            "breadth_change_pct": round(100 * (b["participants"]
                                                               - a["participants"])
                                                        / a["participants"], 6),
                            "depth_change": round(b["share_dosed"] - a["share_dosed"], 6)})
    return {"dose": {"sessions": 5, "minutes": 300}, "by_cluster_term": rows,
            "scaling_up_only": up_only, "planted": _scale_planted(people, st, rows),
            "definition": "term = calendar half-year of the exchange's start_date; reached = "
                          "non-comparison participant with at least one event; light touch = "
                          "an active participant who keeps only the first 1-"
                          f"{LIGHT_TOUCH_MAX_EVENTS} of the events drawn for them (probability "
                          f"{LIGHT_TOUCH_SHARE}, planted clusters' shares in planted."
                          "light_touch_share); expected_share_dosed = mean over reached "
                          "participants of p * dosed-if-light-touch + (1 - p) * dosed-if-not"}


def _scale_planted(people: _People, st: _Structure, rows: dict) -> list[dict]:
    """truth.json "scale"."planted": per SCALE_PLANT cluster, its change from the data's
    previous to last term as realised (participants reached, dosed share: what res_scale must
    show exactly) and the depth change expected by design: the mean over its reached
    participants of p * dosed-if-light-touch + (1 - p) * dosed-if-not, p their light-touch
    probability (the only draw the plant adds), whose Newcombe interval must cover it."""
    reached = ~people.comparison & (people.n_events > 0)
    term = _term_ix(st.ex_start[people.exch])
    last = int(_term_ix(st.ex_start).max())
    full = (people.n_drawn >= 5) | (people.minutes_full >= 300)
    light = (np.minimum(people.n_drawn, people.light_cap) >= 5) | (people.minutes_light >= 300)
    expected = people.light_p * light + (1 - people.light_p) * full
    ids = [c[0] for c in CLUSTERS]
    labels = [f"{t // 2}-H{t % 2 + 1}" for t in (last - 1, last)]
    out = []
    for kind, plant in SCALE_PLANT.items():
        c = plant["cluster"]
        mine = reached & (st.ex_cluster[people.exch] == ids.index(c))
        got = rows.get(c, {})
        if not all(t in got for t in labels):
            out.append({"kind": kind, "cluster": c, "planted": False,
                        "why": "the cluster has no participants in one of the terms"})
            continue
        a, b = got[labels[0]], got[labels[1]]
        e0, e1 = (float(expected[mine & (term == t)].mean()) for t in (last - 1, last))
        breadth = b["participants"] - a["participants"]
        # the quadrant the plant gives: the schedule's breadth (no draw) and the expected depth
        quadrant = {(True, True): "scaling up and in", (True, False): "scaling up only",
                    (False, True): "scaling in only"}.get((breadth > 0, e1 > e0), "neither")
        out.append({
            "kind": kind, "cluster": c, "name": CLUSTERS[ids.index(c)][1], "planted": True,
            "previous_term": labels[0], "term": labels[1], "quadrant": quadrant,
            "light_touch_share": {labels[0]: plant["light_touch"][0],
                                  labels[1]: plant["light_touch"][1]},
            "exchanges_moved": st.scale_moved.get(kind, []), "as_planted": quadrant == plant[
                "quadrant"],
            "participants": {labels[0]: a["participants"], labels[1]: b["participants"]},
            "breadth_change_pct": round(100 * (b["participants"] - a["participants"])
                                        / a["participants"], 6),
            "depth_change": round(b["share_dosed"] - a["share_dosed"], 6),
            "expected_share_dosed": {labels[0]: round(e0, 6), labels[1]: round(e1, 6)},
            "expected_depth_change": round(e1 - e0, 6)})
    return out

