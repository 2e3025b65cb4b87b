"""The entity catalogue: a deterministic generator of plausible sports organisations, and seeding.

``generate_catalogue(n, seed)`` builds clubs (most), federations, leagues and
agencies in clusters of one country and sport ("spain-basketball"). The
result depends only on ``(n, seed)`` and is prefix-stable: the first 100 of
``n=3400`` are exactly ``n=100``. That holds because entities come from an
endless stream built in blocks of ``BLOCK_SIZE`` (3,400, the demo size):

* each block has a plan, drawn from ``seed`` and the block number only:
  clusters with realistic sizes (5-80) summing to the block size, and in each
  cluster the members (a federation, a league or two, an agency or three,
  clubs of tiers 1-3);
* the block's members are shuffled, so any prefix mixes countries and sports;
* names are drawn in stream order from word lists (cities, naming customs of
  each country and sport, nicknames), and a name whose slug is taken draws
  again, so de-duplication is deterministic and ids are unique.

With ``n == BLOCK_SIZE`` cluster sizes are exactly the plan. A catalogue
larger than one block adds further clusters per country and sport
("spain-basketball-2") made of clubs and agencies, so no cluster outgrows 80.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Protocol, Sequence

from engine.core.errors import ConfigError
from engine.core.model import DomainError, Entity, Hypothesis, Template, slugify

#: Entities per block of the stream; also the demo catalogue's size.
BLOCK_SIZE = 3400
MIN_CLUSTER = 5
MAX_CLUSTER = 80
DEMO_ENTITIES = 3400
DEMO_SEED = 7


# --------------------------------------------------------------------------- word lists


@dataclass(frozen=True)
class Country:
    name: str
    adjective: str  # "Norwegian Handball Federation"
    style: str  # naming custom of its clubs
    weight: float  # relative size of its sports market
    sports: Mapping[str, float]  # sport -> popularity in [0, 1]
    cities: tuple[str, ...]
    short: str = ""  # "USA Basketball"
    royal: bool = False  # "Royal Spanish Football Federation"

    @property
    def slug(self) -> str:
        return slugify(self.name)


SPORTS = (
    "Football",
    "Basketball",
    "Handball",
    "Ice Hockey",
    "Rugby",
    "Cricket",
    "Volleyball",
    "Baseball",
    "American Football",
    "Field Hockey",
)


def _cities(text: str) -> tuple[str, ...]:
    return tuple(c.strip() for c in text.split(",") if c.strip())


COUNTRIES: tuple[Country, ...] = (
    Country("England", "English", "en", 10, {"Football": 1.0, "Rugby": 0.5, "Cricket": 0.5, "Basketball": 0.2,
            "Field Hockey": 0.2, "Ice Hockey": 0.12}, _cities(
        "London, Manchester, Liverpool, Leeds, Birmingham, Newcastle, Sheffield, Bristol, Nottingham, Leicester, "
        "Southampton, Portsmouth, Brighton, Norwich, Ipswich, Derby, Coventry, Reading, Oxford, Cambridge, Bath, "
        "Exeter, Plymouth, Hull, York, Bradford, Sunderland, Middlesbrough, Preston, Blackburn, Bolton, Wigan, "
        "Stoke, Wolverhampton, Swindon, Luton, Northampton, Peterborough, Gloucester, Worcester, Carlisle, "
        "Doncaster, Huddersfield, Burnley, Chester, Colchester, Milton Keynes, Cheltenham")),
    Country("Scotland", "Scottish", "en", 2, {"Football": 1.0, "Rugby": 0.45}, _cities(
        "Glasgow, Edinburgh, Aberdeen, Dundee, Inverness, Perth, Stirling, Kilmarnock, Motherwell, Paisley, Ayr, "
        "Falkirk, Livingston, Dunfermline, Greenock, Hamilton, Arbroath, Montrose, Dumfries, Kirkcaldy")),
    Country("Wales", "Welsh", "en", 1.2, {"Rugby": 1.0, "Football": 0.55}, _cities(
        "Cardiff, Swansea, Newport, Wrexham, Llanelli, Bridgend, Neath, Aberystwyth, Bangor, Pontypridd, "
        "Merthyr Tydfil, Carmarthen, Ebbw Vale, Caerphilly, Barry")),
    Country("Ireland", "Irish", "en", 1.5, {"Rugby": 0.8, "Football": 0.65}, _cities(
        "Dublin, Cork, Limerick, Galway, Waterford, Sligo, Drogheda, Dundalk, Kilkenny, Athlone, Wexford, Bray, "
        "Tralee, Ennis, Navan, Longford")),
    Country("Spain", "Spanish", "es", 7, {"Football": 1.0, "Basketball": 0.6, "Handball": 0.3,
            "Volleyball": 0.15}, _cities(
        "Madrid, Barcelona, Valencia, Sevilla, Bilbao, Málaga, Zaragoza, Valladolid, Vigo, Gijón, A Coruña, "
        "Granada, Alicante, Murcia, Palma, Las Palmas, Santander, Pamplona, Córdoba, Almería, Cádiz, Huesca, "
        "Oviedo, Salamanca, Tarragona, Girona, Elche, Burgos, León, Badajoz, Logroño, Castellón"), royal=True),
    Country("Germany", "German", "de", 8, {"Football": 1.0, "Handball": 0.5, "Basketball": 0.35,
            "Ice Hockey": 0.35, "Volleyball": 0.15}, _cities(
        "Berlin, Hamburg, München, Köln, Frankfurt, Stuttgart, Düsseldorf, Dortmund, Essen, Leipzig, Bremen, "
        "Dresden, Hannover, Nürnberg, Duisburg, Bochum, Wuppertal, Bielefeld, Bonn, Münster, Mannheim, "
        "Karlsruhe, Augsburg, Wiesbaden, Mainz, Kiel, Freiburg, Rostock, Kassel, Magdeburg, Braunschweig, "
        "Aachen, Chemnitz, Halle, Paderborn, Regensburg, Ulm, Heidenheim, Darmstadt, Oldenburg")),
    Country("Italy", "Italian", "it", 6, {"Football": 1.0, "Volleyball": 0.5, "Basketball": 0.4,
            "Rugby": 0.12}, _cities(
        "Roma, Milano, Napoli, Torino, Palermo, Genova, Bologna, Firenze, Bari, Catania, Venezia, Verona, "
        "Messina, Padova, Trieste, Brescia, Parma, Modena, Reggio Emilia, Perugia, Cagliari, Livorno, Salerno, "
        "Bergamo, Lecce, Udine, Cremona, Como, Pisa, Ascoli, Pescara, Empoli, Monza, Treviso, Trento")),
    Country("France", "French", "fr", 7, {"Football": 1.0, "Rugby": 0.6, "Handball": 0.4, "Basketball": 0.35,
            "Volleyball": 0.15}, _cities(
        "Paris, Marseille, Lyon, Toulouse, Nice, Nantes, Strasbourg, Montpellier, Bordeaux, Lille, Rennes, "
        "Reims, Le Havre, Saint-Étienne, Toulon, Grenoble, Dijon, Angers, Nîmes, Brest, Le Mans, "
        "Clermont-Ferrand, Amiens, Limoges, Tours, Metz, Besançon, Perpignan, Orléans, Rouen, Caen, Nancy, Pau, "
        "Bayonne, Lorient, Auxerre, Brive, Castres")),
    Country("Portugal", "Portuguese", "pt", 3, {"Football": 1.0, "Basketball": 0.2, "Handball": 0.22}, _cities(
        "Lisboa, Porto, Braga, Coimbra, Guimarães, Funchal, Setúbal, Aveiro, Faro, Viseu, Leiria, Chaves, "
        "Barcelos, Famalicão, Vizela, Estoril, Portimão, Arouca, Tondela, Paços de Ferreira")),
    Country("Netherlands", "Dutch", "nl", 3, {"Football": 1.0, "Field Hockey": 0.45, "Volleyball": 0.15}, _cities(
        "Amsterdam, Rotterdam, Den Haag, Utrecht, Eindhoven, Groningen, Tilburg, Almere, Breda, Nijmegen, "
        "Enschede, Arnhem, Haarlem, Zwolle, Maastricht, Leeuwarden, Heerenveen, Alkmaar, Deventer, Venlo, "
        "Sittard, Emmen"), royal=True),
    Country("Belgium", "Belgian", "nl", 2, {"Football": 1.0, "Basketball": 0.22, "Volleyball": 0.22}, _cities(
        "Brussels, Antwerp, Ghent, Charleroi, Liège, Bruges, Namur, Leuven, Mons, Mechelen, Kortrijk, Ostend, "
        "Genk, Hasselt, Sint-Truiden, Waregem, Eupen, Aalst"), royal=True),
    Country("Norway", "Norwegian", "nordic", 1.5, {"Football": 1.0, "Handball": 0.6, "Ice Hockey": 0.3}, _cities(
        "Oslo, Bergen, Trondheim, Stavanger, Drammen, Fredrikstad, Kristiansand, Tromsø, Sandefjord, Ålesund, "
        "Bodø, Molde, Haugesund, Lillestrøm, Sarpsborg, Tønsberg, Hamar, Skien, Larvik, Elverum")),
    Country("Sweden", "Swedish", "nordic", 2, {"Football": 1.0, "Ice Hockey": 0.8, "Handball": 0.5}, _cities(
        "Stockholm, Göteborg, Malmö, Uppsala, Västerås, Örebro, Linköping, Helsingborg, Jönköping, Norrköping, "
        "Lund, Umeå, Gävle, Borås, Södertälje, Eskilstuna, Halmstad, Växjö, Karlstad, Sundsvall, Luleå, "
        "Skellefteå, Kalmar, Östersund")),
    Country("Denmark", "Danish", "nordic", 1.5, {"Football": 1.0, "Handball": 0.8}, _cities(
        "København, Aarhus, Odense, Aalborg, Esbjerg, Randers, Kolding, Horsens, Vejle, Roskilde, Herning, "
        "Silkeborg, Næstved, Fredericia, Viborg, Holstebro, Skjern, Helsingør")),
    Country("Finland", "Finnish", "nordic", 1.2, {"Ice Hockey": 1.0, "Football": 0.5, "Basketball": 0.2}, _cities(
        "Helsinki, Espoo, Tampere, Vantaa, Oulu, Turku, Jyväskylä, Lahti, Kuopio, Pori, Joensuu, "
        "Lappeenranta, Hämeenlinna, Vaasa, Rauma, Seinäjoki, Mikkeli, Kouvola")),
    Country("Poland", "Polish", "slavic", 3, {"Football": 1.0, "Volleyball": 0.6, "Handball": 0.3,
            "Basketball": 0.2}, _cities(
        "Warszawa, Kraków, Łódź, Wrocław, Poznań, Gdańsk, Szczecin, Bydgoszcz, Lublin, Białystok, Katowice, "
        "Gdynia, Częstochowa, Radom, Toruń, Kielce, Rzeszów, Gliwice, Zabrze, Olsztyn, Bielsko-Biała, Płock, "
        "Opole, Legnica, Lubin, Zielona Góra, Jastrzębie-Zdrój, Bełchatów")),
    Country("Czech Republic", "Czech", "slavic", 1.5, {"Ice Hockey": 1.0, "Football": 0.8}, _cities(
        "Praha, Brno, Ostrava, Plzeň, Liberec, Olomouc, České Budějovice, Hradec Králové, Pardubice, Zlín, "
        "Kladno, Jihlava, Karlovy Vary, Mladá Boleslav, Třinec, Litvínov, Teplice, Jablonec")),
    Country("Austria", "Austrian", "de", 1.2, {"Football": 1.0, "Ice Hockey": 0.4}, _cities(
        "Wien, Graz, Linz, Salzburg, Innsbruck, Klagenfurt, Villach, Wels, St. Pölten, Dornbirn, "
        "Wiener Neustadt, Steyr, Leoben, Bregenz, Wolfsberg, Hartberg, Ried, Altach")),
    Country("Switzerland", "Swiss", "de", 1.5, {"Football": 1.0, "Ice Hockey": 0.9}, _cities(
        "Zürich, Genève, Basel, Lausanne, Bern, Winterthur, Luzern, St. Gallen, Lugano, Biel, Thun, Fribourg, "
        "Schaffhausen, Chur, Sion, Davos, Zug, Ambrì, Langnau, Kloten, Rapperswil, Aarau")),
    Country("Greece", "Hellenic", "gr", 1.5, {"Football": 1.0, "Basketball": 0.8}, _cities(
        "Athens, Thessaloniki, Patras, Heraklion, Larissa, Volos, Ioannina, Chania, Kalamata, Piraeus, "
        "Tripoli, Xanthi, Kavala, Serres, Lamia, Agrinio")),
    Country("Turkey", "Turkish", "tr", 3, {"Football": 1.0, "Basketball": 0.6, "Volleyball": 0.4}, _cities(
        "İstanbul, Ankara, İzmir, Bursa, Antalya, Konya, Adana, Gaziantep, Kayseri, Trabzon, Samsun, "
        "Eskişehir, Denizli, Sivas, Malatya, Rize, Manisa, Kocaeli, Sakarya, Erzurum, Hatay, Alanya")),
    Country("Croatia", "Croatian", "slavic", 1, {"Football": 1.0, "Handball": 0.7, "Basketball": 0.4}, _cities(
        "Zagreb, Split, Rijeka, Osijek, Zadar, Pula, Slavonski Brod, Karlovac, Varaždin, Šibenik, Dubrovnik, "
        "Velika Gorica, Koprivnica, Vinkovci, Sisak")),
    Country("Serbia", "Serbian", "slavic", 1, {"Football": 1.0, "Basketball": 0.8}, _cities(
        "Beograd, Novi Sad, Niš, Kragujevac, Subotica, Zrenjanin, Pančevo, Čačak, Kraljevo, Novi Pazar, "
        "Leskovac, Smederevo, Valjevo, Kruševac, Vršac, Šabac")),
    Country("United States", "United States", "us", 12, {"Basketball": 1.0, "American Football": 1.0,
            "Baseball": 0.9, "Ice Hockey": 0.6, "Football": 0.6}, _cities(
        "New York, Los Angeles, Chicago, Houston, Phoenix, Philadelphia, San Antonio, San Diego, Dallas, Austin, "
        "Jacksonville, Columbus, Charlotte, Indianapolis, Seattle, Denver, Boston, Nashville, Detroit, Portland, "
        "Memphis, Louisville, Baltimore, Milwaukee, Albuquerque, Tucson, Fresno, Sacramento, Kansas City, "
        "Atlanta, Omaha, Raleigh, Miami, Oakland, Minneapolis, Tulsa, Cleveland, Wichita, New Orleans, Tampa, "
        "Pittsburgh, Cincinnati, St. Louis, Orlando, Salt Lake City, Buffalo, Richmond, Boise, Spokane, "
        "Des Moines, Hartford, Providence, Rochester, Anchorage, Honolulu, El Paso, Las Vegas, San Jose"),
        short="USA"),
    Country("Canada", "Canadian", "us", 3, {"Ice Hockey": 1.0, "Football": 0.4, "Basketball": 0.4}, _cities(
        "Toronto, Montréal, Vancouver, Calgary, Edmonton, Ottawa, Winnipeg, Québec, Halifax, Victoria, "
        "Saskatoon, Regina, Kitchener, Windsor, Oshawa, Kingston, Sudbury, Moncton, Saint John, Kelowna, "
        "Kamloops, Red Deer, Lethbridge, Thunder Bay, Sherbrooke, Gatineau, Barrie, Brandon")),
    Country("Mexico", "Mexican", "es", 3, {"Football": 1.0, "Baseball": 0.3}, _cities(
        "Ciudad de México, Guadalajara, Monterrey, Puebla, Tijuana, León, Querétaro, Toluca, Torreón, Pachuca, "
        "Morelia, Mérida, Cancún, Chihuahua, Aguascalientes, San Luis Potosí, Veracruz, Culiacán, Mazatlán, "
        "Hermosillo, Oaxaca, Tampico, Durango, Saltillo")),
    Country("Brazil", "Brazilian", "pt", 5, {"Football": 1.0, "Volleyball": 0.5, "Basketball": 0.3}, _cities(
        "São Paulo, Rio de Janeiro, Belo Horizonte, Porto Alegre, Salvador, Recife, Fortaleza, Curitiba, "
        "Brasília, Manaus, Belém, Goiânia, Campinas, Santos, Florianópolis, Natal, Maceió, João Pessoa, "
        "Cuiabá, Vitória, Juiz de Fora, Londrina, Ribeirão Preto, Chapecó, Criciúma, Sorocaba, Joinville, "
        "Uberlândia, Campo Grande, Caxias do Sul")),
    Country("Argentina", "Argentine", "es", 3, {"Football": 1.0, "Basketball": 0.3, "Rugby": 0.3}, _cities(
        "Buenos Aires, Córdoba, Rosario, Mendoza, La Plata, Tucumán, Mar del Plata, Salta, Santa Fe, San Juan, "
        "Resistencia, Neuquén, Bahía Blanca, Paraná, Corrientes, Posadas, Jujuy, Rafaela, Banfield, "
        "Avellaneda, Lanús, Quilmes")),
    Country("Japan", "Japanese", "asia", 4, {"Baseball": 1.0, "Football": 0.8, "Basketball": 0.4, "Rugby": 0.3,
            "Volleyball": 0.3}, _cities(
        "Tokyo, Osaka, Yokohama, Nagoya, Sapporo, Fukuoka, Kobe, Kyoto, Kawasaki, Saitama, Hiroshima, Sendai, "
        "Chiba, Kitakyushu, Niigata, Hamamatsu, Kumamoto, Okayama, Shizuoka, Kagoshima, Nagasaki, Kanazawa, "
        "Matsuyama, Kashima, Kofu, Oita, Mito, Utsunomiya")),
    Country("South Korea", "Korean", "asia", 2, {"Baseball": 1.0, "Football": 0.7, "Basketball": 0.3}, _cities(
        "Seoul, Busan, Incheon, Daegu, Daejeon, Gwangju, Suwon, Ulsan, Changwon, Goyang, Seongnam, Yongin, "
        "Cheongju, Jeonju, Cheonan, Pohang, Gimhae, Jeju, Anyang, Bucheon")),
    Country("Australia", "Australian", "anz", 3, {"Rugby": 0.9, "Cricket": 0.8, "Football": 0.6,
            "Basketball": 0.4}, _cities(
        "Sydney, Melbourne, Brisbane, Perth, Adelaide, Gold Coast, Newcastle, Canberra, Wollongong, Hobart, "
        "Geelong, Townsville, Cairns, Darwin, Toowoomba, Ballarat, Bendigo, Launceston, Mackay, Parramatta, "
        "Penrith, Cronulla")),
    Country("New Zealand", "New Zealand", "anz", 1, {"Rugby": 1.0, "Cricket": 0.5}, _cities(
        "Auckland, Wellington, Christchurch, Hamilton, Tauranga, Dunedin, Palmerston North, Napier, Nelson, "
        "Rotorua, New Plymouth, Whangārei, Invercargill, Whanganui, Gisborne")),
    Country("South Africa", "South African", "anz", 1.5, {"Rugby": 1.0, "Football": 0.8, "Cricket": 0.7}, _cities(
        "Johannesburg, Cape Town, Durban, Pretoria, Gqeberha, Bloemfontein, East London, Polokwane, Mbombela, "
        "Kimberley, Rustenburg, Pietermaritzburg, Soweto, Stellenbosch, George, Potchefstroom")),
    Country("India", "Indian", "anz", 3, {"Cricket": 1.0, "Football": 0.4, "Field Hockey": 0.25}, _cities(
        "Mumbai, Delhi, Bengaluru, Hyderabad, Ahmedabad, Chennai, Kolkata, Pune, Jaipur, Lucknow, Kanpur, "
        "Nagpur, Indore, Bhopal, Patna, Vadodara, Ludhiana, Kochi, Guwahati, Chandigarh, Ranchi, Mohali, "
        "Dharamshala, Rajkot, Visakhapatnam, Cuttack")),
    Country("Saudi Arabia", "Saudi", "arab", 1.2, {"Football": 1.0}, _cities(
        "Riyadh, Jeddah, Mecca, Medina, Dammam, Taif, Tabuk, Buraidah, Khobar, Abha, Hail, Najran, Jizan, "
        "Al-Ahsa, Yanbu")),
    Country("United Arab Emirates", "UAE", "arab", 0.8, {"Football": 1.0, "Cricket": 0.3}, _cities(
        "Dubai, Abu Dhabi, Sharjah, Al Ain, Ajman, Ras Al Khaimah, Fujairah, Umm Al Quwain, Khor Fakkan, "
        "Dibba, Kalba, Hatta"), short="UAE"),
)

NICKNAMES = (
    "Hawks", "Wolves", "Stallions", "Falcons", "Bears", "Lions", "Titans", "Comets", "Rangers", "Pioneers",
    "Mariners", "Thunder", "Storm", "Blaze", "Raptors", "Knights", "Vipers", "Spartans", "Coyotes", "Eagles",
    "Bulls", "Sharks", "Panthers", "Warriors", "Rebels", "Bandits", "Outlaws", "Express", "Dragons", "Giants",
    "Royals", "Rockets", "Admirals", "Cyclones", "Strikers", "Chargers", "Kings", "Wildcats", "Huskies",
    "Phoenix", "Jaguars", "Foxes", "Owls", "Badgers", "Ravens", "Sabres", "Gladiators", "Monarchs", "Heat",
    "Suns", "Stars", "Tigers", "Pumas", "Orcas", "Miners", "Steelers", "Blue Sox", "Red Wings", "Aces",
)

ARAB_CLUB_WORDS = (
    "Ittihad", "Ahli", "Shabab", "Wahda", "Nasr", "Hilal", "Taawoun", "Fateh", "Raed", "Khaleej", "Ettifaq",
    "Wasl", "Jazira", "Fayha", "Qadsiah", "Orobah", "Batin", "Faisaly",
)

#: Club naming customs: (sport, style) -> patterns; "*" is any style. "{c}" city, "{n}" nickname, "{a}" Arabic word.
CLUB_NAMES: dict[tuple[str, str], tuple[str, ...]] = {
    ("Football", "en"): ("{c} United", "{c} City", "{c} Town", "{c} Rovers", "{c} Athletic", "{c} Wanderers",
                         "{c} Albion", "{c} FC", "{c} County", "{c} Rangers"),
    ("Football", "es"): ("Real {c}", "{c} CF", "CD {c}", "UD {c}", "Atlético {c}", "SD {c}", "Racing {c}",
                         "Deportivo {c}", "Club Atlético {c}"),
    ("Football", "pt"): ("{c} FC", "Sporting {c}", "SC {c}", "Clube Atlético {c}", "EC {c}", "Esporte Clube {c}",
                         "União {c}", "Associação Desportiva {c}"),
    ("Football", "de"): ("FC {c}", "SV {c}", "VfB {c}", "VfL {c}", "1. FC {c}", "TSV {c}", "Borussia {c}",
                         "Eintracht {c}", "SC {c}", "SpVgg {c}"),
    ("Football", "it"): ("AC {c}", "US {c}", "{c} Calcio", "AS {c}", "SS {c}", "{c} FC", "Atletico {c}"),
    ("Football", "fr"): ("Olympique {c}", "FC {c}", "Stade {c}", "AS {c}", "Racing Club {c}", "US {c}",
                         "SC {c}", "AJ {c}"),
    ("Football", "nl"): ("FC {c}", "{c} SC", "SC {c}", "VV {c}", "Sparta {c}", "Fortuna {c}", "KV {c}"),
    ("Football", "nordic"): ("{c} IF", "{c} FK", "IK {c}", "{c} BK", "{c} IL", "FC {c}", "{c} FF"),
    ("Football", "slavic"): ("FK {c}", "NK {c}", "Dinamo {c}", "Lokomotiva {c}", "Sparta {c}", "Slavia {c}",
                             "{c} FC"),
    ("Football", "tr"): ("{c}spor", "{c} Belediyespor", "{c} FK", "{c} Gençlik Spor"),
    ("Football", "gr"): ("AE {c}", "{c} FC", "Aris {c}", "Iraklis {c}", "Athletic Club {c}"),
    ("Football", "arab"): ("Al-{a} {c}", "{c} Club", "{c} FC"),
    ("Football", "us"): ("{c} FC", "{c} SC", "{c} United", "{c} {n}", "Real {c}"),
    ("Football", "asia"): ("{c} FC", "{c} {n}", "FC {c}", "{c} United"),
    ("Football", "*"): ("{c} FC", "FC {c}", "{c} United", "{c} City FC", "{c} SC", "{c} Football Club"),
    ("Basketball", "de"): ("{c} Baskets", "BG {c}", "{c} Basketball Club", "BBC {c}"),
    ("Basketball", "slavic"): ("KK {c}", "BC {c}", "{c} Basketball Club"),
    ("Basketball", "es"): ("CB {c}", "Baloncesto {c}", "Básquet {c}", "Club Baloncesto {c}"),
    ("Basketball", "pt"): ("{c} Basquete", "Clube de Basquete {c}", "{c} Basketball Club"),
    ("Basketball", "it"): ("Pallacanestro {c}", "{c} Basket", "Virtus {c}"),
    ("Basketball", "fr"): ("{c} Basket", "JL {c}", "Élan {c}", "BCM {c}"),
    ("Basketball", "tr"): ("{c} Basketbol", "{c}spor Basketbol", "{c} Belediye Basketbol"),
    ("Basketball", "us"): ("{c} {n}",),
    ("Basketball", "anz"): ("{c} {n}",),
    ("Basketball", "asia"): ("{c} {n}", "{c} Basketball Club"),
    ("Basketball", "*"): ("{c} Basketball Club", "BC {c}", "{c} Basket", "Basket {c}"),
    ("Handball", "de"): ("HSG {c}", "SG {c}", "TV {c}", "{c} Handball", "THW {c}"),
    ("Handball", "nordic"): ("{c} HK", "{c} Håndball", "{c} Handbollsklubb", "{c} Handball"),
    ("Handball", "slavic"): ("RK {c}", "HC {c}", "KS {c} Handball"),
    ("Handball", "fr"): ("{c} Handball", "HBC {c}", "US {c} Handball"),
    ("Handball", "es"): ("BM {c}", "Balonmano {c}", "Club Balonmano {c}"),
    ("Handball", "*"): ("HC {c}", "{c} Handball Club", "{c} Handball"),
    ("Ice Hockey", "nordic"): ("{c} IK", "{c} HF", "{c} Hockey", "{c} Ishockeyklubb"),
    ("Ice Hockey", "de"): ("EHC {c}", "ERC {c}", "EV {c}", "HC {c}"),
    ("Ice Hockey", "slavic"): ("HC {c}", "HK {c}", "Dynamo {c}"),
    ("Ice Hockey", "us"): ("{c} {n}",),
    ("Ice Hockey", "*"): ("HC {c}", "{c} Hockey Club", "{c} Ice Hockey Club"),
    ("Rugby", "fr"): ("Stade {c}", "RC {c}", "US {c}", "Union Sportive {c}", "{c} Olympique Rugby"),
    ("Rugby", "en"): ("{c} RFC", "{c} Rugby", "{c} {n}", "{c} Rugby Club"),
    ("Rugby", "anz"): ("{c} {n}", "{c} Rugby Club"),
    ("Rugby", "asia"): ("{c} {n}",),
    ("Rugby", "it"): ("Rugby {c}", "{c} Rugby"),
    ("Rugby", "*"): ("{c} RFC", "{c} Rugby Club", "{c} Rugby"),
    ("Cricket", "anz"): ("{c} {n}", "{c} Cricket Club"),
    ("Cricket", "*"): ("{c} Cricket Club", "{c} CC"),
    ("Volleyball", "it"): ("Pallavolo {c}", "Volley {c}", "{c} Volley"),
    ("Volleyball", "pt"): ("Vôlei {c}", "{c} Vôlei"),
    ("Volleyball", "tr"): ("{c} Voleybol", "{c}spor Voleybol"),
    ("Volleyball", "slavic"): ("AZS {c}", "KS {c} Volleyball", "VC {c}"),
    ("Volleyball", "asia"): ("{c} {n}",),
    ("Volleyball", "*"): ("{c} Volley", "VC {c}", "{c} Volleyball Club"),
    ("Baseball", "*"): ("{c} {n}", "{c} Baseball Club"),
    ("American Football", "*"): ("{c} {n}",),
    ("Field Hockey", "nl"): ("HC {c}", "Mixed Hockey Club {c}", "{c} Hockey"),
    ("Field Hockey", "*"): ("{c} Hockey Club", "HC {c}", "{c} HC"),
}

FEDERATION_NAMES = ("{adj} {sport} Federation", "{adj} {sport} Association")
FEDERATION_NAMES_EN = ("{adj} {sport} Association", "{sport} {short}", "{adj} {sport} Federation")
LEAGUE_NAMES_TOP = ("{adj} {sport} Premier League", "{adj} {sport} Super League", "{adj} {sport} League",
                    "{adj} Professional {sport} League")
LEAGUE_NAMES_SECOND = ("{adj} {sport} Championship", "{adj} {sport} First Division",
                       "{adj} Women's {sport} League", "{adj} {sport} Second Division")
AGENCY_PREFIXES = (
    "Elite", "Apex", "Summit", "Meridian", "Pinnacle", "Northstar", "Crown", "Atlas", "Vanguard", "Horizon",
    "Catalyst", "Ironbridge", "Keystone", "Blue Harbour", "Redline", "Goldfield", "Silverline", "Cornerstone",
    "Momentum", "Fulcrum", "Landmark", "Paragon", "Sterling", "Triumph", "Velocity", "Zenith", "First Touch",
    "Playmaker", "Baseline", "Kickoff",
)
AGENCY_SURNAMES = (
    "Walker", "Moreno", "Fischer", "Rossi", "Dubois", "Silva", "Jansen", "Larsen", "Kowalski", "Novak", "Tanaka",
    "Kim", "Patel", "Murphy", "Campbell", "Hughes", "Schmidt", "Bauer", "Ferreira", "Costa", "García", "Nielsen",
)
AGENCY_NAMES = (
    "{p} Sports Management Group", "{p} Sports Management", "{p} Athlete Representation", "{p} Sports Agency",
    "{p} Sports & Entertainment", "{p} Talent Partners", "{p} Sports Group", "{c} Sports Partners",
    "{p} {sport} Agency", "{s} & {s2} Sports", "{s} Sports Consultancy",
)


def _sport_label(sport: str, country: Country) -> str:
    """How the sport is called in names: association football is 'Soccer' in North America and Oceania."""
    if sport == "Football" and country.name in ("United States", "Canada", "Australia", "New Zealand"):
        return "Soccer"
    return sport


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class _Slot:
    """One planned entity: what it is, not yet what it is called."""

    country: Country
    sport: str
    cluster: str
    type: str
    tier: int
    rank: int = 0  # league: 0 top division, 1 second


def default_template_id(entity_type: str, tier: int) -> str:
    """The shipped template for an organisation of this type and tier."""
    if entity_type == "club":
        return "tier1_club" if tier == 1 else "tier2_club"
    return entity_type  # "federation", "league", "agency"


def _cluster_sizes(rng: random.Random, total: int) -> list[tuple[Country, str, int]]:
    """Clusters (country, sport, size) with MIN..MAX members summing to ``total``."""
    pairs = []
    for country in COUNTRIES:
        for sport, popularity in country.sports.items():
            # market size x popularity, with a seeded spread so seeds differ
            pairs.append((country, sport, country.weight * popularity * rng.lognormvariate(0.0, 0.25)))
    weights = [w for _, _, w in pairs]
    # proportional sizes, clamped; rescale until the clamped sizes sum to total
    scale = total / sum(weights)
    for _ in range(60):
        sizes = [min(MAX_CLUSTER, max(MIN_CLUSTER, w * scale)) for w in weights]
        s = sum(sizes)
        if abs(s - total) < 0.5:
            break
        scale *= total / s
    ints = [int(x) for x in sizes]
    # largest remainder first, then whatever room the bounds leave
    order = sorted(range(len(sizes)), key=lambda i: (-(sizes[i] - ints[i]), i))
    short = total - sum(ints)
    i = 0
    while short != 0 and i < 10 * len(order):
        j = order[i % len(order)]
        step = 1 if short > 0 else -1
        if MIN_CLUSTER <= ints[j] + step <= MAX_CLUSTER:
            ints[j] += step
            short -= step
        i += 1
    if short != 0:  # only if the word lists cannot hold `total` (a programming error)
        raise ConfigError(f"cannot plan {total} entities in clusters of {MIN_CLUSTER}-{MAX_CLUSTER}")
    return [(c, sport, size) for (c, sport, _), size in zip(pairs, ints)]


def _block_plan(seed: int, block: int) -> list[_Slot]:
    """The shuffled members of one block of the stream; depends on (seed, block) only."""
    rng = random.Random(f"catalogue:{seed}:{block}")
    slots: list[_Slot] = []
    for country, sport, size in _cluster_sizes(rng, BLOCK_SIZE):
        cluster = f"{country.slug}-{slugify(sport)}" + (f"-{block + 1}" if block else "")
        popularity = country.sports[sport]
        members: list[_Slot] = []
        if block == 0:
            members.append(_Slot(country, sport, cluster, "federation", 1 if popularity >= 0.6 else 2))
            if size >= 12:
                members.append(_Slot(country, sport, cluster, "league", 1, rank=0))
            if size >= 40:
                members.append(_Slot(country, sport, cluster, "league", 2, rank=1))
        agencies = int(size * 0.045 + rng.random())
        for _ in range(agencies):
            members.append(_Slot(country, sport, cluster, "agency", rng.choices((1, 2, 3), (2, 4, 4))[0]))
        clubs = size - len(members)
        tier1 = min(20, round(clubs * 0.3))
        tier2 = round(clubs * 0.35)
        for k in range(clubs):
            tier = 1 if k < tier1 else 2 if k < tier1 + tier2 else 3
            members.append(_Slot(country, sport, cluster, "club", tier))
        slots.extend(members[:size])
    rng.shuffle(slots)
    return slots


# --------------------------------------------------------------------------- names


def _candidate_name(slot: _Slot, rng: random.Random) -> str:
    c = slot.country
    label = _sport_label(slot.sport, c)
    adj = c.adjective
    if slot.type == "club":
        patterns = CLUB_NAMES.get((slot.sport, c.style)) or CLUB_NAMES[(slot.sport, "*")]
        pattern = rng.choice(patterns)
        city = rng.choice(c.cities)
        if pattern.startswith("{c}spor"):
            city = city.replace(" ", "")
        return pattern.format(c=city, n=rng.choice(NICKNAMES), a=rng.choice(ARAB_CLUB_WORDS))
    if slot.type == "federation":
        if c.style in ("en", "us", "anz"):
            pattern = rng.choice(FEDERATION_NAMES_EN)
        else:
            pattern = rng.choice(FEDERATION_NAMES)
            if c.royal and rng.random() < 0.6:
                pattern = "Royal " + pattern
        if slot.sport == "Rugby" and c.style in ("en", "anz") and rng.random() < 0.6:
            pattern = "{adj} Rugby Union"
        if slot.sport == "Cricket" and rng.random() < 0.6:
            pattern = "{short} Cricket Board"
        return pattern.format(adj=adj, sport=label, short=c.short or c.name)
    if slot.type == "league":
        pattern = rng.choice(LEAGUE_NAMES_TOP if slot.rank == 0 else LEAGUE_NAMES_SECOND)
        return pattern.format(adj=adj, sport=label)
    pattern = rng.choice(AGENCY_NAMES)
    s, s2 = rng.sample(AGENCY_SURNAMES, 2)
    return pattern.format(p=rng.choice(AGENCY_PREFIXES), c=rng.choice(c.cities), sport=label, s=s, s2=s2)


def _unique_name(slot: _Slot, rng: random.Random, taken: set[str]) -> str:
    for _ in range(40):
        name = _candidate_name(slot, rng)
        if slugify(name) not in taken:
            return name
    # a crowded pool (huge catalogues): number the last candidate deterministically
    k = 2
    while slugify(f"{name} {k}") in taken:
        k += 1
    return f"{name} {k}"


def iter_catalogue(seed: int) -> Iterator[Entity]:
    """The endless, deterministic stream of entities behind ``generate_catalogue``."""
    names = random.Random(f"names:{seed}")
    taken: set[str] = set()
    block = 0
    while True:
        for slot in _block_plan(seed, block):
            name = _unique_name(slot, names, taken)
            entity_id = slugify(name)
            taken.add(entity_id)
            yield Entity(
                id=entity_id,
                name=name,
                sport=slot.sport,
                country=slot.country.name,
                type=slot.type,
                tier=slot.tier,
                cluster=slot.cluster,
                template_id=default_template_id(slot.type, slot.tier),
            )
        block += 1


def generate_catalogue(n: int, seed: int) -> list[Entity]:
    """``n`` plausible sports organisations, deterministic for (n, seed) and prefix-stable in n."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ConfigError(f"catalogue size must be a whole number >= 0, got {n!r}")
    stream = iter_catalogue(seed)
    return [next(stream) for _ in range(n)]


# --------------------------------------------------------------------------- hypotheses and seeding


def build_hypotheses(entity: Entity, template: Template, now: float) -> list[Hypothesis]:
    """One fresh hypothesis per pattern of the entity's template; prior = pattern weight."""
    if template.id != entity.template_id:
        raise DomainError(
            f"entity {entity.id!r} uses template {entity.template_id!r}, not {template.id!r}"
        )
    return [Hypothesis.new(entity.id, pattern, now) for pattern in template.patterns]


class CatalogueStore(Protocol):
    """The part of GraphStore that seeding and import need."""

    def upsert_templates(self, templates) -> int: ...
    def upsert_entities(self, entities: Sequence[Entity], hypotheses: Sequence[Hypothesis]) -> int: ...
    def count_entities(self) -> int: ...


@dataclass(frozen=True)
class SeedReport:
    entities: int  # written (created or refreshed)
    hypotheses: int  # built; existing ones kept their state
    seconds: float
    new_entities: int = 0  # how many the graph did not hold before
    graph_entities: int = 0  # entities in the graph afterwards

    def summary(self) -> str:
        return (
            f"seeded {self.entities:,} entities and {self.hypotheses:,} hypotheses in {self.seconds:.1f} s "
            f"({self.new_entities:,} new; the graph holds {self.graph_entities:,} entities)"
        )


def templates_for(entities: Sequence[Entity], templates: Mapping[str, Template]) -> dict[str, Template]:
    """The templates ``entities`` use; ConfigError naming any that is missing."""
    used = sorted({e.template_id for e in entities})
    missing = [t for t in used if t not in templates]
    if missing:
        raise ConfigError(
            f"template(s) {', '.join(map(repr, missing))} not loaded (have: {', '.join(sorted(templates))}): "
            "add the JSON file under data/templates"
        )
    return {t: templates[t] for t in used}


def write_entities(
    graph: CatalogueStore, entities: Sequence[Entity], templates: Mapping[str, Template], now: float
) -> int:
    """Upsert the templates used, then the entities with one hypothesis per pattern. Returns hypotheses built."""
    used = templates_for(entities, templates)
    graph.upsert_templates(used.values())
    hypotheses = [h for e in entities for h in build_hypotheses(e, used[e.template_id], now)]
    graph.upsert_entities(entities, hypotheses)
    return len(hypotheses)


def seed_catalogue(
    graph: CatalogueStore,
    n: int,
    seed: int,
    templates: Mapping[str, Template],
    clock: Callable[[], float] = time.time,
    timer: Callable[[], float] = time.perf_counter,
) -> SeedReport:
    """Generate ``n`` entities from ``seed`` and upsert them with their hypotheses (idempotent).

    ``clock`` stamps the new hypotheses; ``timer`` measures how long it took.
    Re-seeding refreshes entity fields and leaves existing hypotheses' state alone.
    """
    started = timer()
    entities = generate_catalogue(n, seed)
    before = graph.count_entities()
    hypotheses = write_entities(graph, entities, templates, clock())
    after = graph.count_entities()
    return SeedReport(
        entities=len(entities),
        hypotheses=hypotheses,
        seconds=timer() - started,
        new_entities=after - before,
        graph_entities=after,
    )
