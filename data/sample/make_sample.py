"""Write the bundled sample corpus in data/sample/: news, gigaword and dialog text.

Every line is original text written for this project: hand-written lines mixed with
templates over a small fictional world (towns, countries, firms, teams, people), so a
tiny model meets the same entities and verbs again and again. One seeded generator
makes every choice, so a re-run rewrites the same bytes.

Usage: .venv/bin/python data/sample/make_sample.py [--out data/sample]
"""
import argparse
import re
import string
from pathlib import Path
from types import SimpleNamespace as NS

import numpy as np
from nltk.tokenize import TreebankWordTokenizer

SEED = 20240607
NEWS_ROWS = 400
SPLIT_ROWS = {"train": 300, "valid": 40, "test": 41}
SCENE_FILLS = 6  # fillings drawn per dialog scene
# Real Gigaword marks unknown words as <unk> in train/valid but as UNK in test.
UNK_MARK = {"train": "<unk>", "valid": "<unk>", "test": "UNK"}

_FORMATTER = string.Formatter()
_TOKENIZER = TreebankWordTokenizer()


def pick(rng, items):
    return items[int(rng.integers(len(items)))]


def fill(templates, pools, rng):
    """Fill {slot} fields of several templates with one set of values.

    A slot named like a pool plus digits (team2) draws from that pool (team) and never
    repeats a value another slot of the same pool already took in this call.
    """
    values, taken = {}, {}
    for template in templates:
        for _, field, _, _ in _FORMATTER.parse(template):
            if not field:
                continue
            slot = field.split(".")[0]
            if slot in values:
                continue
            pool_name = slot.rstrip("0123456789")
            pool = pools[pool_name]
            used = taken.setdefault(pool_name, [])
            while True:
                value = pool(rng) if callable(pool) else pick(rng, pool)
                if value not in used:
                    break
            used.append(value)
            values[slot] = value
    return [template.format(**values) for template in templates]


def thousands(low, high, step=1):
    return lambda rng: f"{int(rng.integers(low // step, high // step + 1)) * step:,}"


def decimal(low, high):
    return lambda rng: f"{rng.integers(round(low * 10), round(high * 10) + 1) / 10:.1f}"


def ordinal(n):
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def score(rng):
    winner = int(rng.integers(1, 6))
    return f"{winner}-{int(rng.integers(0, winner))}"


def votes(rng):
    yes = int(rng.integers(160, 260))
    return f"{yes} to {yes - int(rng.integers(5, 60))}"


def news_money(rng):
    if rng.random() < 0.5:
        return f"${int(rng.integers(12, 96)) * 10} million"
    return f"${rng.integers(11, 90) / 10:.1f} billion"


def price(rng):
    if rng.random() < 0.4:
        return f"${int(rng.integers(12, 96)) * 10},000"
    return f"${rng.integers(11, 99) / 10:.1f} million"


def sprint(rng):
    metres = pick(rng, [100, 200])
    base = 9.8 if metres == 100 else 19.7
    return f"{metres} metres in {base + rng.integers(2, 35) / 100:.2f} seconds"


def giga_money(rng):
    if rng.random() < 0.5:
        amount, unit, short = int(rng.integers(12, 96)) * 10, "million", "mln"
        euros = f"{round(amount * 0.92)} million euros"
        text = f"{amount} million dollars"
    else:
        amount = rng.integers(11, 90) / 10
        unit, short = "billion", "bln"
        text = f"{amount:.1f} billion dollars"
        euros = f"{amount * 0.92:.1f} billion euros"
    shown = f"{amount:.1f}" if unit == "billion" else str(amount)
    return NS(text=text, paren=f"{text} ({euros})", short=f"{shown} {short} dollars")


def inflation(rng):
    before = int(rng.integers(25, 120))
    now = before - int(rng.integers(2, 15))
    return NS(now=f"{now / 10:.1f}", before=f"{before / 10:.1f}")


def race(rng):
    dist = pick(rng, ["100", "200", "400"])
    base = {"100": 10.7, "200": 21.8, "400": 48.9}[dist]
    return NS(dist=dist, time=f"{base + rng.integers(5, 90) / 100:.2f}")


def pipeline(rng):
    km = int(rng.integers(12, 80)) * 10  # below 800, so "a ...-kilometre" never needs "an"
    return NS(km=f"{km:,}", miles=f"{round(km * 0.621):,}")


def named(name):
    return NS(name=name, last=name.split()[-1])


def country(name, adj, capital, president, pm, opposition, fm):
    """One fictional country; its office holders keep their posts in every row."""
    offices = {"president": president, "pm": pm, "opposition": opposition, "fm": fm}
    return NS(name=name, adj=adj, capital=capital, **{office: named(who) for office, who in offices.items()})


def person(name, he):
    him, his = ("him", "his") if he == "he" else ("her", "her")
    return NS(name=name, he=he, He=he.capitalize(), him=him, his=his)


COMPANIES = [
    NS(name="Brightline Motors", home="Veloria", adj="Velorian", short="brightline",
       product="its electric vans", sector="car"),
    NS(name="Corvan Energy", home="Karvia", adj="Karvian", short="corvan",
       product="natural gas", sector="energy"),
    NS(name="Tessaly Foods", home="Marenia", adj="Marenian", short="tessaly",
       product="its frozen meals", sector="food"),
    NS(name="Norwick Bank", home="Veloria", adj="Velorian", short="norwick",
       product="home loans", sector="banking"),
    NS(name="Meridian Steel", home="Veloria", adj="Velorian", short="meridian",
       product="building materials", sector="steel"),
    NS(name="Vantor Airlines", home="Sundera", adj="Sunderan", short="vantor",
       product="summer flights", sector="airline"),
    NS(name="Greystone Retail", home="Ostria", adj="Ostrian", short="greystone",
       product="its own-brand clothing", sector="retail"),
    NS(name="Oakridge Telecom", home="Tavania", adj="Tavanian", short="oakridge",
       product="mobile data plans", sector="telecoms"),
]
TEAMS = [
    NS(name="Northvale United", short="northvale", ground="Riverside Park"),
    NS(name="Redcliff Rovers", short="redcliff", ground="the Quarry Ground"),
    NS(name="Ashford City", short="ashford", ground="Mill Road"),
    NS(name="Port Ellery Athletic", short="port ellery", ground="the Harbour Stadium"),
    NS(name="Kessington Town", short="kessington", ground="Abbey Field"),
    NS(name="Halden Wanderers", short="halden", ground="Castle Meadow"),
]
# name, adjective, capital, president, prime minister, opposition leader, foreign minister
COUNTRIES = [
    country("Veloria", "Velorian", "Lisova", "Lucia Ferro", "Henrik Vale", "Amara Nwosu", "Karl Mettler"),
    country("Marenia", "Marenian", "Belmora", "Ana Solberg", "Yusuf Demir", "Ivan Dorak", "Rosa Lindqvist"),
    country("Karvia", "Karvian", "Tarn", "Milos Vrbanac", "Petra Novak", "Dmitri Sokol", "Aleksa Horvat"),
    country("Sundera", "Sunderan", "Corvella", "Samuel Adomako", "Grace Nkemelu", "Tobias Reyna", "Sipho Tshabalo"),
    country("Tavania", "Tavanian", "Nessa", "Mirela Stan", "Andrei Vasko", "Elena Corbu", "Matei Lungu"),
    country("Ostria", "Ostrian", "Ardon", "Franz Keller", "Lena Brandt", "Tunde Oyelaran", "Hugo Weiss"),
]
# Surnames rare enough that the headline data turns them into the unknown-word marker.
RARE_SURNAMES = ["Vrbanac", "Oyelaran", "Tshabalo", "Przybor"]


NEWS_POOLS = {
    "day": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "month": ["January", "February", "March", "April", "May", "June", "July", "August",
              "September", "October", "November", "December"],
    "city": ["Port Ellery", "Northvale", "Ashford", "Kessington", "Marlow Bay", "Redcliff",
             "Eastbrook", "Halden"],
    "region": ["the north", "the south", "the coastal region", "the capital region", "the east"],
    "co": COMPANIES,
    "quarter": ["first-quarter", "second-quarter", "third-quarter", "fourth-quarter"],
    "pct": decimal(0.3, 9.8),
    "bigpct": lambda rng: str(int(rng.integers(10, 46))),
    "rate": decimal(1.5, 8.5),
    "money": news_money,
    "price": price,
    "fine": lambda rng: f"${int(rng.integers(2, 96))} million",
    "nword": ["two", "three", "four", "five", "six", "seven", "ten"],
    "ordinal": ["second", "third", "fourth", "fifth"],
    "jobs": thousands(300, 4500, 50),
    "infl": ["too high", "a serious concern", "falling, but too slowly", "under control"],
    "costs": ["food and fuel", "rent and electricity", "housing", "energy", "transport and insurance"],
    "analyst": ["Priya Nair", "Tom Adler", "Lena Fischer", "Marcus Hale"],
    "team": TEAMS,
    "score": score,
    "player": ["Leo Marsh", "Jamie Kerr", "Sam Okoro", "Luca Bianchi", "Tom Fielding", "Ben Archer"],
    "newplayer": ["Kai Moreno", "Joel Brandt", "Femi Adeyemi", "Oscar Lund", "Ravi Sethi"],
    "coach": ["Tomas Berg", "Maria Lopez", "Alan Price", "Greta Holm"],
    "crowd": thousands(8000, 41000, 100),
    "athlete": ["Kofi Mensah", "Dan Rios", "Marcus Reid", "Tariq Bell"],
    "race": sprint,
    "age": lambda rng: str(int(rng.integers(19, 32))),
    "minute": lambda rng: ordinal(int(rng.integers(8, 91))),
    "families": lambda rng: str(int(rng.integers(2, 31)) * 10),
    "temp": lambda rng: str(int(rng.integers(31, 40))),
    "cold": lambda rng: str(int(rng.integers(8, 22))),
    "speed": lambda rng: str(int(rng.integers(9, 16)) * 10),
    "homes": thousands(2000, 60000, 500),
    "season": ["spring", "summer", "autumn", "winter"],
    "meteorologist": ["Karen Doyle", "Ian Moss", "Beth Sandoval"],
    "institute": ["the University of Northvale", "the Kessington Institute", "Halden University",
                  "the Marlow Bay Marine Centre"],
    "creature": ["frog", "beetle", "bat", "lizard", "moth", "snail"],
    "habit": ["walked for 30 minutes a day", "ate fish twice a week",
              "slept at least seven hours a night", "cycled to work", "cooked at home most days"],
    "ly": lambda rng: str(int(rng.integers(4, 300)) * 10),
    "scientist": ["Helen Park", "Amir Khan", "Sofia Lind", "Peter Grant"],
    "probe": ["Lark", "Wayfarer", "Kestrel", "Juniper"],
    "hours": lambda rng: str(int(rng.integers(6, 49))),
    "policy": ["raise the minimum wage next year", "build 50,000 new homes by 2030",
               "cut fuel duty for six months", "hire 5,000 more nurses",
               "lower the voting age to 16", "double spending on flood defences"],
    "critic": ["unrealistic", "rushed", "a cynical election promise", "a distraction"],
    "contract": ["two-year", "three-year", "four-year", "five-year"],
    "summer": ["June", "July", "August"],
    "attack": ["losing control of the economy", "ignoring the needs of ordinary families",
               "breaking every promise it made", "failing a whole generation"],
    "votes": votes,
    "bill": ["raise the retirement age to 67", "ban smoking in public parks",
             "give local councils more power over housing", "protect whistleblowers",
             "make school meals free for every child"],
    "protest": ["plans to close the city's maternity hospital", "rising rents",
                "cuts to bus and train services", "a new airport runway", "the new security law"],
    "points": ["two", "three", "four", "five", "six"],
    "officers": lambda rng: str(int(rng.integers(4, 41)) * 10),
    "film": ["The Long Winter", "Salt and Iron", "A House by the Sea", "Northern Lights",
             "The Last Ferry"],
    "filmtopic": ["a family running a small farm", "two brothers who have not spoken in 20 years",
                  "a fishing town in decline", "a teacher in a remote village"],
    "artist": ["the landscape painter Elsa Moreau", "Victor Hale", "the sculptor Ines Carvalho"],
    "band": ["The Lanterns", "North Station", "The Velvet Rooks", "Harbour Lights"],
    "tourn": ["12", "14", "15", "16", "20", "22", "25", "30"],
    "author": ["Maya Collins", "Jonah Reed", "Nora Quist", "Daniel Osei"],
    "book": ["The Quiet Harbour", "Letters from Halden", "What the River Knew", "Salt Roads"],
    "authorquote": ["I never expected a small story about my grandmother to reach so many readers",
                    "I wrote most of it at the kitchen table after my children were asleep",
                    "Every book starts with a question I cannot answer",
                    "I wanted to write about the town where I grew up, warts and all"],
    "weatherbad": ["cold", "rain", "strong wind", "late start"],
    "tech": ["Pellar Systems", "Oakridge Telecom", "Novabyte", "Zentry", "Corelink"],
    "action": ["make calls", "send messages", "log in to their accounts", "pay by card",
               "stream video"],
    "users": lambda rng: pick(rng, [f"{rng.integers(11, 99) / 10:.1f} million",
                                    f"{int(rng.integers(12, 99)) * 10},000"]),
    "aiquote": ["change almost every job", "make doctors and teachers more productive",
                "transform the way we work", "help us find new medicines faster"],
    "year": ["2027", "2028", "2029", "2030"],
}

NEWS_TEMPLATES = [
    # economy
    "{co.name} said on {day} that its {quarter} profit rose {pct} percent to {money}, helped by strong demand for "
    "{co.product}.",
    "Shares of {co.name} fell {pct} percent in early trading on {day} after the company cut its forecast for the full "
    "year.",
    'The central bank left its main interest rate unchanged at {rate} percent on {day}, saying inflation was still '
    '"{infl}."',
    "Unemployment in {region} fell to {rate} percent in {month}, the lowest level in {nword} years, official figures "
    "showed.",
    "{co.name} plans to cut {jobs} jobs over the next {nword} years as it moves more of its work to {city}.",
    "Consumer prices rose {pct} percent in {month} from a year earlier, driven mainly by higher costs for {costs}.",
    "{co.name} agreed on {day} to buy a smaller rival for {money}, in a deal that would create the region's largest "
    "{co.sector} group.",
    '"The next few months will be difficult for {co.sector} companies," said {analyst}, an economist at Norwick Bank.',
    "Finance Minister Clara Voss said on {day} that the government would not raise taxes this year, despite a budget "
    "gap of {money}.",
    "Exports fell {pct} percent in {month}, the {ordinal} monthly drop in a row, as demand from Europe and Asia "
    "weakened.",
    # sports
    "{team.name} beat {team2.name} {score} on {day}, with {player} scoring twice in the second half.",
    "{player} will miss the next {nword} weeks with a knee injury, {team.name} said on {day}.",
    '"We played well for an hour, but that\'s not enough at this level," said {team.name} coach {coach} after the '
    '{score} defeat.',
    "{team.name} moved to the top of the table after a {score} win over {team2.name} in front of {crowd} fans.",
    "Sprinter {athlete} won the {race}, the fastest time in the world this year.",
    "The match between {team.name} and {team2.name} was called off on {day} because of heavy rain and a waterlogged "
    "pitch.",
    "{team.name} have signed {newplayer}, a {age}-year-old midfielder, on a {contract} contract.",
    "{player} scored in the {minute} minute to give {team.name} a 1-0 win at {team2.ground}.",
    "{team.name} fans will have to wait another year after their side lost the cup final {score} to {team2.name}.",
    # weather
    "Heavy rain caused flooding in parts of {city} on {day}, closing several roads and forcing {families} families "
    "from their homes.",
    "Forecasters said temperatures could reach {temp} degrees Celsius in {city} by the weekend, well above the average "
    "for {month}.",
    "A storm with winds of up to {speed} kilometres per hour hit the coast near {city} overnight, cutting power to "
    "{homes} homes.",
    "Snow and ice disrupted train services around {city} on {day}, and police warned drivers to stay off the roads.",
    "The weather service issued a heat warning for {region} on {day}, urging older people to stay indoors in the "
    "afternoon.",
    '"It has been the driest {season} we have recorded in {nword} years," said {meteorologist}, a forecaster in '
    '{city}.',
    "Strong winds brought down trees across {city} on {day}, and one man was slightly hurt when a branch hit his car.",
    "Temperatures fell to minus {cold} degrees in {city} overnight, the coldest night of the winter so far.",
    # science
    "Researchers at {institute} said they had found a new species of {creature} in the forests near {city}.",
    "A study published on {day} found that people who {habit} were {bigpct} percent less likely to develop heart "
    "disease.",
    "Scientists using a new telescope have found signs of water vapour on a planet about {ly} light-years from Earth.",
    '"This is an important first step, but we still need larger trials," said Dr. {scientist} of {institute}.',
    "The space agency said on {day} that its {probe} probe had sent back the first close-up images of the asteroid.",
    "A team from {institute} has developed a cheap battery that can store solar power for up to {hours} hours.",
    "A team led by Dr. {scientist} spent {nword} months studying {creature}s on the coast near {city}.",
    "Researchers at {institute} say a new drug slowed memory loss in patients with early dementia by about {bigpct} "
    "percent.",
    # politics
    "Prime Minister Daniel Harker said on {day} that the government would {policy}, a plan critics called {critic}.",
    'Opposition leader Ruth Okafor accused the government of "{attack}" and called for an early election.',
    "Parliament voted {votes} on {day} to approve a bill that would {bill}.",
    "Thousands of people marched through central {city} on {day} to protest against {protest}.",
    "The mayor of {city} said the city would spend {money} on new housing and public transport over the next {nword} "
    "years.",
    "Voters in {city} go to the polls on {day} in a local election seen as a test for the governing party.",
    "Ruth Okafor's party is ahead by {points} points in the latest poll, the first time it has led since {month}.",
    '"We will {policy}, and we will do it without raising taxes," Prime Minister Daniel Harker told supporters in '
    '{city}.',
    "The interior minister said {officers} extra police officers would be sent to {city} after a rise in burglaries.",
    # culture
    'The {city} Film Festival opened on {day} with the premiere of "{film}," a drama about {filmtopic}.',
    "A painting by {artist} sold for {price} at an auction in {city}, far above its estimate.",
    "The band {band} announced a {tourn}-city tour on {day}, with tickets going on sale next month.",
    '{author}\'s novel "{book}" won the national book prize on {day}.',
    "The {city} Museum will reopen in {month} after a {nword}-year renovation that cost {price}.",
    '"{authorquote}," {author} said in an interview.',
    "More than {crowd} people attended the open-air concert in {city} on {day}, despite the {weatherbad}.",
    "{band} will headline the {city} summer festival in {summer}, organisers said on {day}.",
    # technology
    "{tech} unveiled a new smartphone on {day}, with a larger screen and a battery it says lasts two full days.",
    "{tech} said a software problem had left some customers unable to {action} for several hours on {day}.",
    "Regulators fined {tech} {fine} on {day} for failing to protect the personal data of {users} users.",
    '{tech}\'s chief executive said artificial intelligence would "{aiquote}" but warned against moving too fast.',
    "Sales of electric cars rose {pct} percent in {month}, after Brightline Motors cut prices on its best-selling "
    "models.",
    "The government said it would spend {money} to bring fast internet to every village by {year}.",
    "{tech} said on {day} that it would open a new research centre in {city}, creating about {jobs} jobs.",
    "Hackers stole the names and email addresses of about {users} customers of {tech}, the company said on {day}.",
]

NEWS_HANDWRITTEN = [
    "The government's new budget, unveiled on Wednesday, includes $4.2 billion for schools and hospitals over the next "
    "three years.",
    '"We are not going to panic," Finance Minister Clara Voss told reporters outside parliament on Monday.',
    "Oil prices climbed for a third straight day on Thursday as traders worried about supplies from the Gulf.",
    "Norwick Bank said it would close 40 branches next year as more customers move to online banking.",
    "Farmers in the east say the late frost has ruined much of this year's apple crop.",
    "The stock market ended the week slightly higher, with technology shares leading the gains.",
    "House prices in Port Ellery rose 6.1 percent last year, almost twice the national average.",
    "A shortage of truck drivers is slowing deliveries to supermarkets across the country, industry groups said.",
    "Small businesses say rising energy bills have become their biggest worry, according to a survey released on "
    "Tuesday.",
    "Vantor Airlines said it expected to carry a record 18 million passengers this year, despite higher fuel costs.",
    "Northvale United's captain Nadia Petrov has signed a new contract that will keep her at the club until 2027.",
    "It was a night to forget for Redcliff Rovers, who conceded three goals in the first 20 minutes.",
    "The marathon was won by a 19-year-old runner from Halden who had never raced the distance before.",
    '"I\'m just happy to be back on the pitch after such a long time," said striker Leo Marsh.',
    "Ticket prices for next season will rise by about 5 percent, the club confirmed on Friday.",
    "The tennis star pulled out of the tournament with a wrist injury, just two days before her first match.",
    "Ashford City have not won away from home since October, and the pressure on their manager is growing.",
    "The cycling race's final stage was cut short after a crash involving more than 30 riders.",
    "Both teams had chances late on, but the game ended in a goalless draw.",
    "Fans lined the streets of Marlow Bay on Sunday to welcome home the champions.",
    "The weekend will start dry and sunny, but showers are expected to move in from the west on Sunday afternoon.",
    "Residents of Eastbrook spent the night in a school gym after the river burst its banks.",
    "Last month was the wettest March on record in Kessington, with more than twice the usual rainfall.",
    "Thick fog delayed dozens of flights at the airport on Tuesday morning.",
    "The cold snap is expected to last until at least the middle of next week, forecasters said.",
    "Firefighters are still battling a wildfire in the hills above Redcliff, where hot, dry winds have made the work "
    "harder.",
    '"You could hear the hail hitting the roof like stones," one resident said.',
    "The drought has left the reservoir at just 31 percent of its capacity, the water company said.",
    "Scientists say a tiny fish found in a cave near Halden can survive for months without food.",
    "A new blood test could help doctors detect some cancers years earlier, according to a study published on "
    "Wednesday.",
    "The rocket lifted off shortly after dawn, carrying a weather satellite and two small research probes.",
    "Researchers warned that rising sea temperatures are putting the region's coral reefs at risk.",
    "The museum's dinosaur skeleton, one of the most complete ever found, is about 70 million years old.",
    "Bees exposed to the pesticide found it harder to return to their hives, the researchers said.",
    '"We were surprised by how quickly the ice is melting," said Dr. Helen Park of the University of Northvale.',
    "Volunteers have counted more than 12,000 birds of 140 species in the city's parks this spring.",
    "The opposition walked out of parliament on Thursday in protest at the new security law.",
    "Prime Minister Daniel Harker will travel to Brussels next week for talks on trade and migration.",
    "A new poll shows the governing party's lead has narrowed to just two points.",
    '"This is a budget for the few, not for the many," opposition leader Ruth Okafor said.',
    "The health minister resigned on Saturday after weeks of criticism over hospital waiting times.",
    "Lawmakers are expected to vote on the pension reform before the summer break.",
    "Police said about 5,000 people took part in the peaceful march, while organisers put the number at 20,000.",
    "The city council approved a plan to ban cars from the old town on weekends.",
    'Both sides said the talks had been "constructive," but no agreement was reached.',
    "The Kessington Museum's new exhibition brings together more than 200 photographs of daily life in the 1950s.",
    "Tickets for the band's two concerts in Port Ellery sold out within an hour.",
    "The old cinema on Harbour Street, closed for a decade, will reopen next month as an arts centre.",
    "Critics have praised the film's young cast, but some found its ending too neat.",
    "The festival drew about 80,000 visitors over four days, a record for the event.",
    '"Music was the only thing that kept me going," the singer said in a rare interview.',
    "A first edition of the children's book, signed by the author, sold for $31,000 at auction.",
    "The theatre company will tour schools in the region this autumn with a new version of a classic comedy.",
    "Pellar Systems said its new chip uses half the power of the previous model.",
    "Many older phones will stop receiving security updates at the end of the year, the company warned.",
    "Oakridge Telecom said the outage, which lasted about six hours, was caused by a fault at a data centre.",
    "The app, which helps drivers find free parking spaces, has been downloaded more than two million times.",
    "Experts warn that many people still use the same password for several online accounts.",
    "The city will test self-driving buses on two routes in Northvale starting in September.",
    '"Artificial intelligence is a tool, not a magic wand," said Pellar Systems chief executive Omar Haddad.',
    "Online shopping accounted for almost a third of all retail sales in December, a new report said.",
    "The company's cloud business grew 28 percent in the last quarter, beating analysts' forecasts.",
    "A 72-year-old man has been rescued after spending two nights trapped in a remote mountain ravine.",
    "The bridge, which links Ashford with the island, will be closed for repairs for three weeks from Monday.",
    "Nurses at the city's two largest hospitals voted to strike next month over pay and staffing.",
    "Teachers say class sizes have grown in the past five years, while budgets have stayed flat.",
    "The zoo's first baby giraffe in a decade was born on Saturday and is doing well, keepers said.",
    "More than 1,200 runners took part in Sunday's charity race, raising about $150,000 for the children's hospital.",
    "A fire at a warehouse on the edge of Halden sent thick black smoke over the town on Friday night.",
    "The port's new container terminal will be able to handle twice as many ships as the old one.",
    "Train fares will rise by an average of 3.8 percent in January, the rail operator said.",
    "Shoppers in Marlow Bay queued from early morning for the opening of the town's first department store in 20 "
    "years.",
    '"It\'s not perfect, but it\'s a lot better than what we had," said one commuter.',
    "The café on the corner of Mill Lane has served the same breakfast for 45 years.",
    "Officials said the new hospital wing, costing €85 million, would open in the spring.",
    "The number of tourists visiting the coast rose 12 percent this summer, helped by a long spell of warm weather.",
    "A well-known chef has opened a restaurant in a converted railway station in Eastbrook.",
    "The company's founder, who started the business in his parents' garage, is stepping down after 30 years.",
    "Emergency services were called to the motorway after a lorry overturned near junction 14 on Wednesday evening.",
    "Residents are being asked to save water after the hottest June since records began.",
    "Heavy snow closed the mountain pass on Friday night.",
    "Vantor Airlines cancelled 40 flights because of the strike.",
    "Leo Marsh has been named player of the month.",
    "The central bank will announce its decision on Thursday.",
    "Petrol prices fell for the fourth week in a row.",
    "Scientists have named the new beetle after a local schoolteacher.",
    "The report, which was written by a panel of doctors, economists and teachers over two years, says the country's "
    "health system will need about 12,000 more nurses by the end of the decade.",
    "After a week of talks that often ran late into the night, union leaders and the rail operator reached a deal on "
    "Saturday that will raise wages by 4 percent this year and next.",
    "Northvale United, who were bottom of the table at Christmas, have now won eight of their last ten games and are "
    "just three points away from a place in Europe.",
    "Residents who live near the river have been told to move valuables upstairs, keep their phones charged and be "
    "ready to leave their homes at short notice if the water keeps rising.",
    "The festival, which began as a small gathering of folk musicians in a Halden pub in 1987, now attracts performers "
    "from more than 30 countries.",
    "Forecasters expect a mild, wet autumn, followed by a colder than usual winter with the risk of heavy snow in the "
    "north and east.",
    "Oakridge Telecom's chief executive, Mira Santos, said the company had spent $2.1 billion on its network this "
    "year, more than in any previous year, and planned to spend even more next year.",
]

GIGA_POOLS = {
    "day": ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"],
    "month": NEWS_POOLS["month"],
    "city": NEWS_POOLS["city"],
    "co": COMPANIES,
    "team": TEAMS,
    "country": COUNTRIES,
    "quarter": NEWS_POOLS["quarter"],
    "quarterword": ["first", "second", "third", "fourth"],
    "pct": decimal(0.3, 9.8),
    "rate": decimal(1.5, 12.5),
    "money": giga_money,
    "infl": inflation,
    "nword": ["two", "three", "four", "five", "six", "seven", "ten"],
    "dead": lambda rng: str(int(rng.integers(3, 60))),
    "hurt": lambda rng: str(int(rng.integers(5, 80))),
    "arrested": lambda rng: str(int(rng.integers(12, 240))),
    "score": score,
    "coach": NEWS_POOLS["coach"],
    "player": [named(name) for name in ["Mia Lorenz", "Elena Marsh", "Hana Kito", "Jade Okafor", "Zofia Przybor"]],
    "athlete": [named(name) for name in ["Ayla Brooks", "Erin Walsh", "Grace Adjei", "Lina Torres"]],
    "tscore": lambda rng: pick(rng, ["6-4, 6-3", "7-5, 6-2", "6-1, 6-4", "4-6, 6-3, 6-2",
                                     "7-6, 3-6, 6-4", "6-2, 6-0"]),
    "round": ["quarter-finals", "semi-finals", "final"],
    "cents": lambda rng: str(int(rng.integers(12, 95))),
    "oil": lambda rng: f"{rng.integers(600, 950) / 10:.2f}",
    "mag": decimal(5.1, 7.4),
    "jobs": thousands(300, 4500, 50),
    "race": race,
    "building": ["textile factory", "shopping centre", "hotel", "warehouse", "nightclub"],
    "official": ["transport minister", "tax chief", "police chief", "customs chief"],
    "years": lambda rng: str(int(rng.integers(3, 13))),
    "gyear": ["2027", "2029", "2031"],
    "institute": NEWS_POOLS["institute"],
    "disease": ["malaria", "dengue", "tuberculosis", "bird flu"],
    "airline": [NS(name="Vantor Airlines", short="vantor", hub="Corvella"),
                NS(name="Sky Marenia", short="sky marenia", hub="Belmora"),
                NS(name="Karvian Air", short="karvian air", hub="Tarn")],
    "flights": lambda rng: str(int(rng.integers(3, 15))),
    "gold": thousands(1800, 2600),
    "pipe": pipeline,
    "votes": votes,
    "updown": [NS(word="up", lead="gains"), NS(word="down", lead="losses")],
}

# (article, headline or list of headlines); both filled from one set of slot values.
GIGA_TEMPLATES = [
    ("{co.name} said {day} its {quarter} net profit rose {pct} percent to {money.text}, helped by strong sales of "
     "{co.product}.",
     ["{co.short} {quarter} profit up {pct} percent", "{co.short} profit rises {pct} percent"]),
    ("Shares in {co.name} fell {pct} percent on {day} after the {co.adj} company warned that full-year earnings would "
     "fall short of forecasts.",
     ["{co.short} shares slump on profit warning", "{co.short} shares fall {pct} percent"]),
    ("At least {dead} people were killed and {hurt} injured when a bus plunged into a ravine in northern "
     "{country.name} on {day}, police said.",
     ["{dead} killed in {country.adj} bus crash", "bus plunges into ravine in {country.name}"]),
    ("{team.name} beat {team2.name} {score} on {day} to move to the top of the league table.",
     ["{team.short} beat {team2.short} to go top", "{team.short} go top with win over {team2.short}"]),
    ("The central bank of {country.name} left its benchmark interest rate unchanged at {rate} percent on {day}, citing "
     "concern over rising prices.",
     ["{country.adj} central bank holds rates steady", "{country.name} keeps interest rate at {rate} percent"]),
    ("The {country.adj} government on {day} unveiled a {money.paren} plan to build new roads, railways and ports over "
     "the next {nword} years.",
     ["{country.name} unveils {money.short} transport plan", "{country.name} plans {money.short} for new roads"]),
    ("{country.adj} President {country.president.name} arrived in {country2.name} on {day} for a {nword}-day state "
     "visit aimed at boosting trade and investment.",
     ["{country.adj} president arrives in {country2.name}",
      "{country.president.last} in {country2.name} to boost trade ties"]),
    ("Floods and landslides triggered by days of heavy rain have killed at least {dead} people in {country.name}, "
     "officials said {day}.",
     ["floods kill {dead} in {country.name}", "{country.name} flood toll rises to {dead}"]),
    ("{country.adj} opposition leader {country.opposition.name} on {day} called for early elections, accusing the "
     "government of failing to tackle rising unemployment.",
     ["{country.adj} opposition calls for early elections",
      "{country.opposition.last} demands early polls in {country.name}"]),
    ("{player.name} beat {player2.name} {tscore} on {day} to reach the {round} of the {city} open.",
     ["{player.last} beats {player2.last} in {city}", "{player.last} into {city} open {round}"]),
    ("Oil prices rose on {day}, with brent crude up {cents} cents at {oil} dollars a barrel, as traders worried about "
     "supplies from {country.name}.",
     ["oil prices rise on {country.adj} supply fears", "oil climbs as traders eye {country.name}"]),
    ("{country.name}'s economy grew {pct} percent in the {quarterword} quarter from a year earlier, the statistics "
     "office said {day}.",
     ["{country.adj} economy grows {pct} percent", "{country.name} growth at {pct} percent in {quarterword} quarter"]),
    ("An earthquake measuring {mag} on the Richter scale struck {country.name} on {day}, but there were no immediate "
     "reports of damage or casualties, seismologists said.",
     ["{mag} quake hits {country.name}", "strong quake shakes {country.name}, no damage reported"]),
    ("{co.name}, the {co.adj} {co.sector} group, said on {day} it would cut {jobs} jobs over the next {nword} years to "
     "reduce costs.",
     ["{co.short} to cut {jobs} jobs", "{co.short} to shed {jobs} jobs in cost drive"]),
    ("Police in {country.capital} arrested {arrested} people on {day} after clashes between protesters and security "
     "forces near the parliament building.",
     ["{arrested} arrested after clashes in {country.capital}",
      "police arrest {arrested} in {country.capital} clashes"]),
    ("{co.name} agreed on {day} to buy {co2.name} for {money.paren}, creating one of the largest companies in "
     "{co.home}.",
     ["{co.short} to buy {co2.short} for {money.short}", "{co.short} agrees {money.short} takeover of {co2.short}"]),
    ("The UN Security Council on {day} urged {country.name} and {country2.name} to resume talks on their disputed "
     "border and to avoid any military action.",
     ["un urges {country.name}, {country2.name} to resume border talks"]),
    ("{athlete.name} of {country.name} won the women's {race.dist} metres at the world championships on {day}, "
     "clocking {race.time} seconds.",
     ["{athlete.last} wins women's {race.dist}m world title", "{country.adj} {athlete.last} takes {race.dist}m gold"]),
    ("Inflation in {country.name} slowed to {infl.now} percent in {month} from {infl.before} percent the previous "
     "month, the central bank said {day}.",
     ["{country.adj} inflation slows to {infl.now} percent"]),
    ("The death toll from a fire at a {building} in {city} has risen to {dead}, state media reported {day}.",
     ["{city} fire death toll rises to {dead}", "{dead} dead in {city} {building} fire"]),
    ("{country.adj} Foreign Minister {country.fm.name} said {day} that {country.name} was ready to restore full "
     "diplomatic ties with {country2.name}.",
     ["{country.name} ready to restore ties with {country2.name}",
      "{country.fm.last} signals thaw with {country2.name}"]),
    ("Stocks on the {country.capital} exchange closed {updown.word} {pct} percent on {day}, led by {updown.lead} in "
     "banking shares.",
     ["{country.capital} stocks close {updown.word} {pct} percent"]),
    ("A court in {country.name} on {day} sentenced a former {official} to {years} years in prison for taking bribes "
     "from construction companies.",
     ["ex-{official} jailed for {years} years", "former {country.adj} {official} jailed for bribery"]),
    ("{country.name} will host the {gyear} regional games, organisers announced on {day} after a vote in "
     "{country2.capital}.",
     ["{country.name} to host {gyear} regional games"]),
    ("Scientists at {institute} said {day} they had developed a new vaccine against {disease} that worked well in "
     "early tests on animals.",
     ["new {disease} vaccine shows promise in tests", "scientists report progress on {disease} vaccine"]),
    ("{country.adj} troops captured a rebel camp in the north of the country on {day}, seizing weapons and ammunition, "
     "the army said.",
     ["{country.adj} troops capture rebel camp", "{country.adj} army seizes rebel camp in north"]),
    ("{airline.name} said {day} it would launch direct flights between {airline.hub} and {city} in {month}, with "
     "{flights} flights a week.",
     ["{airline.short} to launch {airline.hub}-{city} flights"]),
    ("The price of gold rose to {gold} dollars an ounce on {day}, its highest level in {nword} months, as investors "
     "sought safe assets.",
     ["gold climbs to {nword}-month high", "gold hits {nword}-month high above {gold} dollars"]),
    ("{country.name} and {country2.name} signed a deal on {day} to build a {pipe.km}-kilometre ({pipe.miles}-mile) gas "
     "pipeline linking the two countries.",
     ["{country.name}, {country2.name} sign gas pipeline deal"]),
    ("{team.name} coach {coach} resigned on {day}, two days after his side's {score} defeat at home to {team2.name}.",
     ["{team.short} coach quits after {score} defeat", "{coach} resigns as {team.short} coach"]),
    ("{country.adj} Prime Minister {country.pm.name} won a confidence vote in parliament on {day} by {votes}, ending "
     "weeks of uncertainty.",
     ["{country.adj} prime minister survives confidence vote", "{country.pm.last} wins confidence vote"]),
    ("Unemployment in {country.name} rose to {rate} percent in {month}, the highest level in {nword} years, the labour "
     "ministry said {day}.",
     ["{country.adj} jobless rate rises to {rate} percent"]),
]

GIGA_HANDWRITTEN = [
    ("The Velorian football federation on Tuesday banned three players for six months for betting on their own "
     "matches.",
     "veloria bans three players over betting"),
    ("A passenger ferry carrying 214 people ran aground off the coast of Marenia on Sunday, but all on board were "
     "rescued, the coast guard said.",
     "ferry runs aground off marenia, all rescued"),
    ("Karvia's parliament on Thursday approved a new constitution that limits presidents to two five-year terms.",
     "karvia parliament approves new constitution"),
    ("Health officials in Sundera said Friday they had confirmed 12 new cases of cholera in the south of the country, "
     "bringing the total this year to 87.",
     "sundera reports 12 new cholera cases"),
    ("Tavania will raise the price of bread by 15 percent from next month, the trade ministry said Monday, the first "
     "increase in four years.",
     "tavania to raise bread prices by 15 percent"),
    ("Brightline Motors will recall about 42,000 electric vans because of a fault in the braking system, the company "
     "said Wednesday.",
     "brightline recalls 42,000 vans over brake fault"),
    ("Veteran goalkeeper Marco Stein announced his retirement on Saturday after 19 years and more than 600 league "
     "games.",
     "goalkeeper stein retires after 19 years"),
    ("The Ostrian government said Tuesday it would close all coal-fired power stations by 2035 and replace them with "
     "wind and solar farms.",
     "ostria to close coal plants by 2035"),
    ("A cargo plane crashed shortly after take-off from Tarn airport on Wednesday, killing its four crew members, "
     "aviation officials said.",
     "cargo plane crash kills four in tarn"),
    ("Marenian President Ana Solberg on Monday named a former central bank governor as the country's new finance "
     "minister.",
     "marenian president names new finance minister"),
    ("Vantor Airlines carried a record 18.4 million passengers last year, up 9 percent, the carrier said Thursday.",
     "vantor passenger numbers hit record"),
    ("Teachers across Karvia went on strike on Monday to demand higher pay, closing more than 3,000 schools, union "
     "leaders said.",
     "karvian teachers strike over pay"),
    ("Velorian police said Sunday they had seized 1.2 tonnes of cocaine hidden in a shipment of bananas at the port of "
     "Lisova.",
     "police seize cocaine in banana shipment"),
    ("The Sunderan currency fell to a record low against the dollar on Friday amid worries over the country's growing "
     "budget deficit.",
     "sunderan currency hits record low"),
    ("Tennis star Mia Lorenz pulled out of next week's Belmora Open with a wrist injury, organisers said on Saturday.",
     "lorenz pulls out of belmora open"),
    ("Ostria and Tavania on Wednesday agreed to reopen their shared border, closed since 2019, to trade and tourism.",
     "ostria, tavania to reopen border"),
    ("Norwick Bank (NB) said Monday it would close 40 branches and move more services online, putting about 600 jobs "
     "at risk.",
     "norwick bank to close 40 branches"),
    ("A new species of frog, no bigger than a fingernail, has been discovered in the rainforests of southern Marenia, "
     "scientists said.",
     "tiny new frog found in marenia"),
    ("Karvian farmers blocked roads with tractors on Tuesday in protest at falling milk prices and rising fuel costs.",
     "karvian farmers block roads in protest"),
    ("Fire swept through a crowded market in Corvella early Sunday, destroying hundreds of stalls but causing no "
     "deaths, firefighters said.",
     "fire destroys market in corvella"),
    ("Meridian Steel said Friday it would invest 400 million dollars (370 million euros) in a new plant in northern "
     "Veloria.",
     "meridian steel to build new plant in veloria"),
    ("Sundera's ruling party on Saturday chose former trade minister Paul Aziz as its candidate for next year's "
     "presidential election.",
     "sundera ruling party picks aziz for presidency"),
    ("Heavy snow cut off dozens of mountain villages in Ostria on Thursday and closed the main road to Ardon, "
     "officials said.",
     "heavy snow cuts off ostrian villages"),
    ("The Tavanian national orchestra will tour 12 countries next year to mark its 100th anniversary, its director "
     "said Tuesday.",
     "tavanian orchestra plans world tour"),
    ("Pellar Systems said Wednesday that a new chip it designed uses half as much power as its previous model.",
     "pellar unveils low-power chip"),
    ("A Velorian appeals court on Monday overturned the conviction of a journalist jailed for reporting on police "
     "corruption.",
     "court frees jailed velorian journalist"),
    ("Doctors in Belmora on Friday separated twin girls who were joined at the hip, in an operation that lasted 14 "
     "hours.",
     "doctors separate twins in 14-hour operation"),
    ("Marenia won the regional rugby championship for the third year in a row on Sunday, beating Karvia 27-12 in the "
     "final.",
     "marenia retain rugby title"),
    ("Karvian Prime Minister Petra Novak said Wednesday her government didn't plan to raise fuel taxes this year, "
     "despite a growing budget gap.",
     "novak rules out fuel tax rise"),
    ('Karvian President Milos Vrbanac said Thursday the country would "never give up" its claim to the disputed '
     'islands.',
     "vrbanac vows to keep island claim"),
    ("Sunderan Foreign Minister Sipho Tshabalo flew to Nessa on Friday for talks on a long-delayed trade agreement "
     "with Tavania.",
     "tshabalo in nessa for trade talks"),
]

MALE = ["Jack", "Michael", "Frank", "Eddie", "Nick", "Peter", "Lou", "Sam", "Tony", "Walter"]
FEMALE = ["Sarah", "Linda", "Rosa", "Kate", "Anna", "Grace", "Maggie", "Lucy", "Vera", "Em"]

DIALOG_POOLS = {
    "person": [person(name, "he") for name in MALE] + [person(name, "she") for name in FEMALE],
    "place": [NS(name="the station", cap="The station"), NS(name="the diner on Fifth", cap="The diner on Fifth"),
              NS(name="the old pier", cap="The old pier"), NS(name="the hotel bar", cap="The hotel bar"),
              NS(name="the church", cap="The church"), NS(name="Vinnie's", cap="Vinnie's"),
              NS(name="the docks", cap="The docks")],
    "time": ["tonight", "at midnight", "tomorrow at noon", "at six", "after dark"],
    "obj": ["the letter", "the key", "the tape", "the envelope", "the map", "the ring", "the gun"],
    "drink": ["Whiskey", "Bourbon", "Scotch", "Rye", "Vodka", "Gin"],
    "hour": ["nine", "ten", "eleven", "seven", "eight"],
    "when": ["Friday", "last night", "the party", "this morning", "Tuesday", "the funeral"],
    "deadline": ["Christmas", "the spring", "the wedding", "your birthday", "the summer"],
    "years": ["five", "ten", "six", "twelve", "three"],
    "town": ["Chicago", "Reno", "Boston", "Denver", "Memphis", "Tucson"],
    "job": ["the bank job", "the Miller job", "the warehouse", "the deal with Vinnie"],
    "relative": ["grandmother", "father", "sister", "aunt"],
    "dish": ["meatloaf", "lasagna", "chicken soup", "apple pie", "pot roast"],
}

# Each scene is a list of variants; a variant is one coherent run of utterances. Every adjacent
# pair carries a slot, so different fillings give different (context, response) rows.
DIALOG_SCENES = [
    [["Meet me at {place.name} {time}.", "Why {place.name}?", "Because nobody will look for us there.",
      "And if {person.name} follows you?", "{person.He} won't. {person.He} thinks I'm in {town}."],
     ["{place.cap}, {time}. Don't be late.", "What if it's a trap, {person2.name}?",
      "Then you'd better bring {person.name}.", "{person.name} won't come. Not after last time."],
     ["I'll be at {place.name} {time}. Come alone.", "Alone? After what happened to {person.name}?",
      "That's exactly why you come alone."]],
    [["Where's {obj}, {person.name}?", "I gave it to {person2.name}.", "You gave {obj} to {person2.name}?",
      "{person2.He} said {person2.he} would keep it safe."],
     ["Have you got {obj}, {person.name}?", "It's somewhere safe. Don't worry.", "Safe where? In {town}?",
      "Somewhere only I know."],
     ["Who took {obj}?", "Ask {person.name}.", "I'm asking you, {person2.name}.",
      "Then the answer is I don't know."]],
    [["Evening, {person.name}. What'll it be?", "{drink}. Make it a double.", "That kind of day?",
      "That kind of year. {person2.name} walked out on me."],
     ["What can I get you?", "{drink}, and keep them coming.", "Celebrating something?",
      "{person.name} left me. Again."]],
    [["How is {person.name}?", "Stable, for now. {person.He}'s sleeping.", "Can I see {person.name}?",
      "Five minutes. No more."],
     ["How's {person.name} doing, Doctor?", "{person.He}'s lost a lot of blood, but {person.he}'s a fighter.",
      "Will {person.name} be all right?", "Let's take it one day at a time."]],
    [["What time is it?", "Almost {hour}.", "We're late. {person.name} is going to kill us.",
      "{person.name} can wait."],
     ["Do you know what time it is?", "A quarter past {hour}.", "{person.name} said {hour} sharp.",
      "Relax. {person.He}'s always late {person.him}self."]],
    [["Have you seen {person.name}?", "Not since {when}. Why?", "{person.He} didn't come home last night.",
      "That's not like {person.name}."],
     ["Anybody seen {person.name} today?", "{person.He} was here {when}.",
      "{person.He}'s not answering {person.his} phone.", "Maybe {person.he} went to {person2.name}'s place."]],
    [["You came back, {person.name}.", "I said I would.", "You said you'd be back by {deadline}.",
      "I know. I'm sorry."],
     ["So you came back.", "Don't sound so surprised, {person.name}.", "It's been {years} years.",
      "I know. I needed to see you."]],
    [["Faster, {person.name}!", "This thing only does sixty!", "Take the turn at {place.name}!",
      "Hold on to something."],
     ["Drive, {person.name}!", "Where to?", "Head for {place.name}.", "Okay. Hang on."]],
    [["Hello? Who is this?", "Is {person.name} there?", "{person.He} just left. Who's calling?",
      "Tell {person.him} {person2.name} called. {person.He}'ll know why."],
     ["Hello? Who's there?", "I need to speak to {person.name}.", "Wrong number, pal.",
      "Tell {person.name} it's about the money."]],
    [["Dinner's ready, {person.name}!", "Five more minutes, Mom.", "{person.name}, you said that an hour ago.",
      "Okay, okay. I'm coming."],
     ["Come on, {person.name}, the food's getting cold.", "I'm not hungry, Mom.",
      "Your {relative} made {dish} just for you.", "Fine. But only because it's {dish}."]],
    [["I'm leaving for {town} {time}.", "Does {person.name} know?", "Nobody knows. Except you, now.",
      "Then I'm coming with you to {town}."],
     ["I hear you're going to {town}.", "Who told you that?", "{person.name}. {person.He} tells me everything.",
      "Not everything, apparently."]],
    [["Tell me about {job}.", "There's nothing to tell.", "{person.name} says different.",
      "{person.name} talks too much."],
     ["Were you in on {job}?", "I was home all night. Ask {person.name}.",
      "I did. {person.He} says you left at {hour}.", "Then {person.he}'s lying."]],
    [["Is {person.name} home?", "Who wants to know?", "Tell {person.him} it's {person2.name} from {town}.",
      "{person.He} doesn't know anybody from {town}."],
     ["{person.name}, this is {person2.name}.", "We've met, in {town}.", "You never told me you were in {town}.",
      "There's a lot I never told you."]],
]

# Consecutive utterances of hand-written scenes; every adjacent pair becomes one (context, response) row.
DIALOG_HANDWRITTEN = [
    ["Where have you been?", "Just out.", "Out where? It's three in the morning, Jack.",
     "I was driving around. I needed to think.", "About what?", "About us."],
    ["Did you bring the money?", "Half of it. You get the rest when I see the car.",
     "That wasn't the deal.", "It is now."],
    ["I can't do this anymore, Sarah.", "Do what?", "Pretend everything's fine.",
     "Nobody's asking you to pretend.", "Your mother is. Every single Sunday."],
    ["Is he going to be okay?", "The next few hours will tell us more.", "Can I see him?",
     "Just for a minute. He needs to rest."],
    ["You're late.", "Traffic was bad.", "You don't drive.", "Then the bus was late. Does it matter?"],
    ["What's that noise?", "Probably the wind.", "The wind doesn't knock three times.", "Stay here. I'll check."],
    ["Captain, we're losing power in the engine room!", "How long do we have?",
     "Ten minutes, maybe less.  Maybe five.", "Then get everyone to the lifeboats. Now!"],
    ["So this is where you grew up?", "Second floor, the window with the broken shutter.",
     "It looks... small.", "It was. Four of us in two rooms."],
    ["I know what you did last summer, Mr. Harlan.", "I don't know what you're talking about.",
     "The boathouse. The fire. Ring any bells?"],
    ["Can you keep a secret?", "Depends on the secret.", "I'm leaving town tomorrow.",
     "What? Does Dad know?", "Nobody knows. Except you, now."],
    ["Two coffees, please. Black.", "Anything to eat?", "No, thanks. Just the coffee.", "Coming right up."],
    ["You said you'd call.", "I know. I'm sorry. Things got complicated.", "They always do with you, Michael."],
    ["Hands where I can see them!", "Easy, officer. I'm just looking for my dog.",
     "At midnight? In a closed park?", "He's a very independent dog."],
    ["What do you want to be when you grow up?", "An astronaut. Or a baker.", "Why those two?",
     "Because both of them get to wear funny hats."],
    ["We need to talk about the Henderson account.", "Not now, Linda.", "Yes, now. We're losing them."],
    ["Do you believe in ghosts?", "I didn\u2019t, until I moved into this house.", "What happened?",
     "Doors open by themselves. And someone hums at night."],
    ["How much for the blue one?", "Forty dollars.", "I'll give you twenty-five.",
     "Thirty, and I'll throw in the case.", "Deal, then."],
    ["Thank you for coming, Doctor.", "I came as soon as I got your letter.", "Then you know why we're afraid.",
     "I know what the letter said. I want to hear it from you."],
    ["Are we there yet?", "No, Tommy.", "How about now?", "Tommy, I swear, if you ask me that one more time..."],
    ["Nice shot.", "Lucky shot.", "There's no such thing as luck at this table, kid."],
    ["Why didn't you tell me you were married?", "Because you never asked.", "That's not an answer, Frank.",
     "It's the only one I've got."],
    ["The bank closes at five.", "Then we go in at four fifty.", "And if something goes wrong?",
     "Nothing goes wrong. Not this time."],
    ["I brought you some soup.", "I'm not hungry.", "You haven't eaten in two days, Dad.",
     "Leave it on the table. Maybe later."],
    ["Who's the girl in the photograph?", "My sister. She died when I was twelve.", "I'm sorry. I didn't know.",
     "Nobody does. I don't talk about her."],
    ["Good morning, Mr. Collins. Sleep well?", "Like a baby. I woke up every two hours and cried.",
     "I'll get you some coffee."],
    ["Mom, have you seen my keys?", "Did you check your coat?", "I checked twice.", "Then check it a third time."],
    ["You really think we can win this case?", "I think the jury wants to believe her.",
     "Wanting isn't enough.", "It's a start."],
    ["Stop the car.", "What? Here?", "Just stop the car, Eddie!", "Okay, okay. What is it?",
     "I think I saw her. Back there, by the station."],
    ["Is this seat taken?", "It is now.", "I'm Kate.", "Nick. You're not from around here, are you?"],
    ["We've got a problem.", "What kind of problem?", "The kind with a badge and a search warrant."],
    ["Happy birthday, sweetheart.", "You remembered!", "Of course I remembered. I was there."],
    ["How long have you worked here?", "Eleven years this June.", "And you never noticed anything strange?",
     "Strange is normal in this building, Detective."],
    ["I'm not going to the party.", "Everyone's going.", "Then nobody will miss me."],
    ["Run, now!", "Which way?", "Any way but that one!"],
    ["The storm's getting worse.", "We should turn back.", "We're closer to the cabin than the car.",
     "Then we keep walking."],
    ["Did you read my script?", "I read the first forty pages.", "And what?",
     "And I stopped reading after forty pages."],
    ["What's your name, son?", "Billy, sir.", "How old are you, Billy?", "Seventeen. Eighteen in March."],
    ["You look tired.", "I haven't slept since Tuesday.", "Go home. I'll cover for you.",
     "You're a lifesaver, Rosa."],
    ["Why do you keep looking at the door?", "I'm waiting for someone.", "Anyone I know?", "I hope not."],
    ["I love you.", "You don't mean that.", "I've never meant anything more in my life."],
    ["Is it true you're selling the farm?", "We don't have a choice, Em.", "There's always a choice.",
     "Not when the bank owns half of it."],
    ["Where's the money, Lou?", "What money?", "Don't play games with me. Not tonight."],
    ["Can I help you?", "I'm looking for a Mr. Daniel Shaw.", "He moved out last spring.",
     "Did he leave an address?"],
    ["You cheated.", "I won.", "By cheating.", "That's a very narrow way of looking at it."],
    ["Hello? Is anybody there?", "Who is this?", "It's me. Anna. Please don't hang up."],
    ["This is the best pie I've ever had.", "It's my grandmother's recipe.", "Marry me.",
     "Ask me again after dessert."],
    ["We were supposed to meet at eight.", "I know. I'm sorry.", "I waited for an hour, Peter.",
     "My mother fell. I was at the hospital all night."],
    ["Pass the salt.", "Say please.", "Please pass the salt, your majesty.", "That's better."],
    ["Who are you?", "A friend of your father's.", "My father didn't have friends.",
     "Then let's say I owed him a favor."],
    ["It's beautiful up here.", "My grandfather built this cabin with his own hands.",
     "What happened to him?", "He walked into the woods one winter and never came back."],
    ["Don\u2019t move.", "I wasn't planning to.", "Good. Now slowly, put the bag on the floor."],
    ["Are you the new teacher?", "That depends. Are you the class clown?", "I'm the class president.",
     "Even worse."],
    ["Any messages for me?", "A woman called twice. She wouldn't leave a name.", "What did she sound like?",
     "Scared, Mr. Baxter.  Very scared."],
    ["I've been thinking about what you said.", "And what did you decide?", "You were right. I should have told her."],
    ["Can I ask you something personal?", "You can ask.", "Why did you really quit the force?",
     "Because I got tired of losing."],
    ["There's someone at the door.", "At this hour? Don't open it.", "It's Mrs. Kowalski from next door.",
     "Then definitely don't open it."],
    ["How was school today?", "Fine, I guess.", "Just fine?", "A boy in my class threw up in music."],
    ["I got the job!", "You're kidding! The one at the newspaper?", "Starting Monday. I'm a real reporter now.",
     "We have to celebrate. Dinner's on me."],
    ["Do you trust me?", "I don't trust anybody.", "That's not what I asked."],
    ["The engine's dead.", "Can you fix it?", "With what, a paper clip and a prayer?",
     "If that's what it takes, yes."],
    ["Why are you whispering?", "Because the walls in this place are thin.", "Who's listening?",
     "Everybody, Harry. Everybody is always listening."],
    ["I've never seen the ocean.", "Never? Not once?", "We didn't travel much when I was a kid.",
     "Then tomorrow we drive to the coast."],
    ["Sir, the senator is on line two.", "Tell him I'm in a meeting.", "He says it's urgent.",
     "It's always urgent with him."],
    ["What did the doctor say?", "That I need to slow down.", "And will you?", "Probably not."],
    ["That's my seat.", "I don't see your name on it.", "Look closer. It's carved right there."],
    ["Are you scared?", "A little. Are you?", "Terrified. But don't tell anyone."],
    ["What are you reading?", "A book about the French Revolution.", "Any good?",
     "Everybody loses their head in the end."],
    ["Hey, mister, you dropped your wallet.", "Thanks, kid. Here, buy yourself something.",
     "Gee, thanks! A whole dollar!"],
    ["I've made a terrible mistake.", "What kind of mistake?", "I told Helen the truth."],
    ["Is that blood on your shirt?", "It's ketchup.", "You hate ketchup.", "Then it's not ketchup."],
    ["How did you find me?", "You're not as careful as you think.", "Who else knows I'm here?", "Nobody. Yet."],
    ["I'd like to report a stolen car.", "Make and model?", "A red convertible. It's my husband's.",
     "And where is your husband now?", "Probably driving it to Mexico."],
    ["We could just stay here forever.", "And do what?", "Fish. Sleep. Watch the sunsets.",
     "You'd be bored in a week."],
    ["Your father would be proud of you.", "My father never said that once.", "He said it to me. Many times."],
    ["Who's winning?", "The other guys.", "By how much?", "Don't ask."],
    ["Ready when you are.", "Give me two more minutes.", "You said that ten minutes ago, Alice."],
    ["Where did you learn to dance like that?", "My aunt taught me in her kitchen.",
     "She must have been quite a dancer.", "She was a nurse. She just liked music."],
    ["You're the one who called the police.", "I had to. He was going to hurt somebody.", "He's my brother.",
     "I know. I'm sorry."],
    ["Is it always this quiet out here?", "Only at night.", "What happens during the day?", "The cows get loud."],
    ["I need a room for the night.", "Just the one night?", "Maybe two. Depends on the weather.",
     "Room six. Breakfast is at seven."],
    ["How do I look?", "Like a million bucks.", "You didn't even turn around.", "I don't need to."],
    ["Have you ever been in love?", "Once. A long time ago.", "What happened?", "She married my best friend."],
    ["Sign here, and here.", "What am I signing?", "Your confession.", "Very funny, Lieutenant."],
    ["Mommy, where do stars go in the daytime?", "They're still there, honey. The sun is just brighter.",
     "Can they see us?", "I like to think so."],
    ["We're out of coffee.", "Then the day is already ruined."],
    ["Get in the car.", "Not until you tell me where we're going.", "Somewhere safe. Please, Laura, get in."],
    ["I don't care what the newspapers say about him, he was the kindest man I ever knew.",
     "Then why did he leave you with nothing but debts and a broken-down truck?",
     "Because he trusted the wrong people, and he paid for it every single day."],
    ["If you walk out that door tonight, don't bother coming back, because I won't be here waiting.",
     "You've said that before, Margaret.",
     "This time I've already packed my bags and called my sister in Omaha."],
]


def words(line):
    return len(line.split())


def make_news(rng):
    lines, seen = list(NEWS_HANDWRITTEN), set(NEWS_HANDWRITTEN)
    assert len(seen) == len(lines), "duplicate hand-written news line"
    while len(lines) < NEWS_ROWS:
        (line,) = fill([pick(rng, NEWS_TEMPLATES)], NEWS_POOLS, rng)
        if line not in seen:
            seen.add(line)
            lines.append(line)
    order = rng.permutation(len(lines))
    return [lines[i] for i in order]


def giga_tokenize(text):
    """Rush et al. (2015) style: PTB tokens, lowercased, every digit as #."""
    tokens = _TOKENIZER.tokenize(text, convert_parentheses=True)
    return re.sub(r"\d", "#", " ".join(tokens).lower())


def make_gigaword(rng):
    total = sum(SPLIT_ROWS.values())
    pairs, seen = [], set()
    for article, title in GIGA_HANDWRITTEN:
        pairs.append((giga_tokenize(article), giga_tokenize(title)))
        seen.add(pairs[-1][0])
    while len(pairs) < total:
        article_template, title_templates = pick(rng, GIGA_TEMPLATES)
        article, title = fill([article_template, pick(rng, title_templates)], GIGA_POOLS, rng)
        article, title = giga_tokenize(article), giga_tokenize(title)
        if article not in seen:
            seen.add(article)
            pairs.append((article, title))
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    rare = {name.lower() for name in RARE_SURNAMES}
    is_rare = [bool(rare & set(article.split() + title.split())) for article, title in pairs]
    rare_pairs = [pair for pair, flag in zip(pairs, is_rare) if flag]
    plain_pairs = [pair for pair, flag in zip(pairs, is_rare) if not flag]
    # Fixed quotas, so that test always shows UNK and valid <unk>, whatever the draw.
    assert len(rare_pairs) > 5, f"only {len(rare_pairs)} gigaword pairs with a rare name"
    rare_quota = {"test": 3, "valid": 2, "train": len(rare_pairs) - 5}
    splits = {}
    for split in ["test", "valid", "train"]:
        taken = rare_quota[split]
        rows = rare_pairs[:taken] + plain_pairs[:SPLIT_ROWS[split] - taken]
        rare_pairs, plain_pairs = rare_pairs[taken:], plain_pairs[SPLIT_ROWS[split] - taken:]
        mark = UNK_MARK[split]
        splits[split] = [
            tuple(" ".join(mark if token in rare else token for token in text.split()) for text in rows[i])
            for i in rng.permutation(len(rows))
        ]
    return splits


def make_dialog(rng):
    """Conversations as consecutive (context, response) pairs; only conversations at a split edge are cut."""
    conversations = [list(lines) for lines in DIALOG_HANDWRITTEN]
    for scene in DIALOG_SCENES:
        for _ in range(SCENE_FILLS):
            conversations.append(fill(pick(rng, scene), DIALOG_POOLS, rng))
    order = rng.permutation(len(conversations))
    seen, rows = set(), []
    for index in order:
        lines = conversations[index]
        pairs = list(zip(lines, lines[1:]))
        # Skip a conversation that repeats a pair rather than cut a hole in its run of turns.
        if len(set(pairs)) == len(pairs) and not seen.intersection(pairs):
            seen.update(pairs)
            rows.extend(pairs)
    total = sum(SPLIT_ROWS.values())
    assert len(rows) >= total, f"only {len(rows)} unique dialog pairs, need {total}"
    # Splits take consecutive rows, so the tgt of one row is usually the src of the next.
    splits, start = {}, 0
    for split in ["test", "valid", "train"]:
        splits[split] = rows[start:start + SPLIT_ROWS[split]]
        start += SPLIT_ROWS[split]
    return splits


def check_lines(path, lines, low, high):
    for number, line in enumerate(lines, 1):
        assert line == line.strip() and "\n" not in line, f"{path}:{number}: stray whitespace"
        assert low <= words(line) <= high, f"{path}:{number}: {words(line)} words, expected {low}-{high}"


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(line + "\n" for line in lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent,
                        help="folder to write news/, gigaword/ and dialog/ into (default: this folder)")
    return parser.parse_args(argv)


def main(args):
    out = args.out
    rng = np.random.default_rng(SEED)
    news = make_news(rng)
    check_lines("news.txt", news, 8, 35)
    write_lines(out / "news" / "news.txt", news)

    gigaword = make_gigaword(rng)
    for split, pairs in gigaword.items():
        articles, titles = zip(*pairs)
        check_lines(f"{split}.article.txt", articles, 8, 60)
        check_lines(f"{split}.title.txt", titles, 4, 10)
        write_lines(out / "gigaword" / f"{split}.article.txt", articles)
        write_lines(out / "gigaword" / f"{split}.title.txt", titles)

    dialog = make_dialog(rng)
    for split in SPLIT_ROWS:
        sources, targets = zip(*dialog[split])
        check_lines(f"{split}.src.txt", sources, 2, 20)
        check_lines(f"{split}.tgt.txt", targets, 2, 20)
        write_lines(out / "dialog" / f"{split}.src.txt", sources)
        write_lines(out / "dialog" / f"{split}.tgt.txt", targets)
    print(f"wrote {len(news)} news lines, gigaword and dialog {SPLIT_ROWS} pairs under {out}")


if __name__ == "__main__":
    main(parse_args())
