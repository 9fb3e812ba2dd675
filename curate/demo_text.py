"""Embedded, original prose for the synthetic demo site (see :mod:`curate.demo_site`).

Every sentence here was written for this project. Articles are assembled from *clusters*:
a cluster is a short run of sentences about one sub-theme, in a sensible order, so that an
article built from a few clusters reads like real prose (a quality classifier is trained on
it). Sentences may contain ``{slot}`` placeholders that are filled per article (a town, a
river, a person) so that two articles sharing a sentence still differ in their word n-grams.

Cluster blocks use a tiny line format, parsed by :func:`parse_clusters`::

    # heading of a new cluster (free text, ignored)
    - First sentence of the cluster, which may wrap
      onto indented continuation lines.
    - Second sentence.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicText:
    """One topic's titles and sentence clusters, in one language."""

    slug: str
    name: str
    lang: str
    intro: str
    titles: tuple[str, ...]
    clusters: tuple[tuple[str, ...], ...]


def parse_clusters(block: str) -> tuple[tuple[str, ...], ...]:
    """Parse the ``# cluster`` / ``- sentence`` format into tuples of sentences."""
    clusters: list[list[str]] = []
    for raw in block.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            clusters.append([])
        elif line.startswith("- "):
            clusters[-1].append(line[2:])
        else:
            clusters[-1][-1] += " " + line
    return tuple(tuple(c) for c in clusters if c)


SITE_NAME = "The Millbrook Almanac"

# --- per-article slot values -----------------------------------------------------------------

EN_SLOTS: dict[str, tuple[str, ...]] = {
    "town": ("Millbrook", "Ashford Green", "Kelby", "Upper Marlow", "Hollins Cross",
             "Brackwater", "Fenwick", "Dunmere"),
    "river": ("the Alder Brook", "the River Wend", "the Marrow", "the Lisle", "the River Tam",
              "the Coldwater"),
    "name": ("Margaret Hale", "Tomas Reyes", "Priya Nair", "Owen Castell", "Ingrid Sorensen",
             "Samuel Okafor", "Lucy Brennan", "Daniel Weiss"),
    "friend": ("Jo", "Marek", "Aisha", "Colin", "Hana", "Pete"),
}

FOREIGN_SLOTS: dict[str, dict[str, tuple[str, ...]]] = {
    "fr": {"town": ("Valmont", "Saint-Aubin", "Bréville", "Montclair-sur-Loue"),
           "name": ("Madeleine Roux", "Étienne Garnier", "Claire Dubois")},
    "de": {"town": ("Lindenau", "Oberbach", "Mühlhausen am Tal", "Rabenstein"),
           "name": ("Jürgen Bauer", "Anna Weiß", "Klaus Hoffmann")},
    "es": {"town": ("Villaverde", "Peñalba", "San Martín del Río", "Olmedilla"),
           "name": ("Lucía Romero", "Andrés Ortega", "Carmen Ibáñez")},
}

AUTHORS: dict[str, tuple[str, ...]] = {
    "en": ("Eleanor Voss", "Rahul Mehta", "Grace Whitfield", "Martin Kowalski", "Nell Ashby"),
    "fr": ("Sophie Lambert", "Hugo Mercier"),
    "de": ("Katrin Vogel", "Felix Brandt"),
    "es": ("Elena Navarro", "Pablo Serrano"),
}

# --- English topics --------------------------------------------------------------------------

_RIVER = """
# riffles and pools
- Walk along {river} on a dry afternoon and you will notice that the water never moves at
  one steady pace.
- In the shallow riffles it breaks white over the stones, while a few yards further on it
  slows into deep, dark pools.
- This alternation is not an accident of the landscape but the result of floods sorting
  gravel year after year.
- Riffles are rich in oxygen, which is why they hold the greatest variety of insect larvae.
- Pools, by contrast, give larger fish a place to rest out of the current and hide from herons.
- A healthy stretch of river needs both, and the boundary between them is often the busiest
  place of all.
# under a stone
- If you lift a flat stone from the riverbed and turn it over gently, you will usually find
  it crawling with life.
- Flattened mayfly nymphs cling to the underside, shaped so that the current presses them
  against the rock rather than tearing them away.
- Caddisfly larvae build portable cases from sand grains or tiny twigs, glued together with
  silk they produce themselves.
- Freshwater shrimp scuttle sideways in search of shelter the moment they are exposed to light.
- Each of these animals tolerates a different level of pollution, so together they act as a
  living record of water quality.
- Always put the stone back exactly where you found it, because a whole community depends on
  that small patch of shade.
# bankside trees
- The trees along a riverbank do far more than make a pleasant view.
- Their roots bind the soil, so that a bank lined with alder and willow erodes far more slowly
  than one grazed bare by cattle.
- Leaves that fall into the water each autumn become food for shredding insects, which in
  turn feed fish and birds.
- Shade keeps the water cool in summer, and cool water holds more of the oxygen that trout
  and salmon need.
- When volunteers planted saplings along {river} near {town}, the summer water temperature
  dropped noticeably within a decade.
- It is slow work, but few conservation projects give such lasting returns for so little
  money.
# counting mayflies
- Every {month}, a small group of volunteers meets at the footbridge in {town} to count
  mayflies.
- The method is simple: three minutes of "kick sampling", a shallow white tray, and a
  laminated identification card.
- {name} has led the survey for years and insists that accuracy matters more than speed.
- The numbers are sent to a regional database, where they are compared with samples taken
  upstream and downstream.
- A sudden fall in one group of insects can warn of a pollution incident long before fish
  begin to die.
- Anyone can join, and most people find that the hour passes far more quickly than they
  expected.
# otters
- Fifty years ago the otter had almost vanished from the rivers of this region.
- Pesticides washing off farmland built up in the fish it ate, and the animals simply stopped
  breeding.
- Once the worst chemicals were banned, the population began a slow and remarkable recovery.
- Today their five-toed footprints can be found in the soft mud beneath bridges along {river}.
- Otters are shy and mostly active at dusk, so a sighting remains a rare and memorable event.
- Their return is often taken as a sign that a river is healthy again, although the truth is
  a little more complicated.
# floods and gravel
- Floods are usually described as disasters, yet a river without them slowly loses much of
  its character.
- High water scours silt from the gravel beds where trout and salmon lay their eggs.
- It also moves fallen trees, creating new pools and backwaters that shelter young fish.
- Where rivers have been straightened and walled in, this natural renewal no longer happens.
- Several projects are now removing old embankments so that the water can spread across
  meadows again.
- The fields flood more often, but the wildlife returns, and towns further downstream are
  spared the worst of the peak.
# pollution and weirs
- Most river pollution does not come from a single pipe but from thousands of small sources
  spread across the catchment.
- Fertiliser washed from fields, oil from roads and overflowing sewers all find their way
  into the same channel.
- After heavy rain, the water below {town} can turn brown within hours as soil is carried off
  the land.
- Old mill weirs add another problem, because they block the migration of eels and other fish.
- Simple fish passes, sometimes no more than a strip of bristles on a concrete slope, can
  help eels climb past.
- Progress is slow, but each barrier removed reconnects miles of habitat that had been cut
  off for a century.
"""

_BREAD = """
# ingredients
- Good bread needs only four ingredients: flour, water, salt and yeast.
- What turns them into a loaf is mostly time, along with a little attention at the right
  moments.
- Strong bread flour contains more protein than plain flour, and that protein forms the
  gluten that traps gas.
- Salt is not only for flavour, as it also tightens the dough and slows fermentation a little.
- Water should be lukewarm rather than hot, because heat above body temperature can weaken
  the yeast.
- Once you understand what each ingredient does, recipes stop feeling like rules and start
  feeling like suggestions.
# kneading
- Kneading develops the gluten network that gives bread its structure.
- Push the dough away with the heel of your hand, fold it back over itself, turn it a quarter
  and repeat.
- At first it will feel sticky and ragged, and many beginners add too much flour at this
  stage.
- Resist the temptation, because a wetter dough usually bakes into a lighter and more open
  crumb.
- After about ten minutes the surface becomes smooth and springs back slowly when pressed with
  a finger.
- If your arms get tired, a series of gentle folds every half hour will achieve much the same
  result.
# fermentation
- During the first rise, yeast feeds on sugars in the flour and releases carbon dioxide and
  alcohol.
- The gas inflates the dough, while the slow chemistry of fermentation builds flavour.
- A cool kitchen may need four or five hours, whereas a warm one can be done in half that
  time.
- Many bakers deliberately slow things down by leaving the dough in the fridge overnight.
- The dough is ready when it has roughly doubled and a floured finger leaves a dent that
  fills back slowly.
- Watching the dough rather than the clock is the most useful habit a home baker can learn.
# starter
- A sourdough starter is nothing more than flour and water colonised by wild yeasts and
  bacteria.
- To begin one, mix equal weights of wholemeal flour and water in a jar and leave it loosely
  covered.
- Each day, discard half and feed what remains with fresh flour and water.
- After a week or so it should bubble reliably and smell pleasantly sour, a little like
  yoghurt or apples.
- {friend}, who has kept the same starter alive since {recent_year}, says the secret is simply
  regular feeding.
- If you go on holiday, a starter will survive a fortnight in the fridge and recover after two
  or three feeds.
# shaping and baking
- Shaping gives the loaf tension on its surface, which helps it rise upwards instead of
  spreading sideways.
- Turn the dough onto an unfloured bench and use a scraper to drag it towards you until the
  top tightens.
- Home ovens struggle to hold the steam that gives professional bread its glossy, crackling
  crust.
- Baking inside a heavy lidded pot solves the problem by trapping the moisture released by
  the dough.
- Remove the lid after twenty minutes so that the crust can darken and crisp.
- The loaf is done when it sounds hollow when tapped underneath, although a thermometer is
  more reliable.
# the village bakery
- The bakery on Mill Street, known to everyone in {town} as "Hale & Daughters", has been open
  since {year}.
- Its ovens are lit at three in the morning, long before the first customers queue outside
  the door.
- {name}, who has worked there for decades, still shapes every loaf by hand.
- The recipes have barely changed, although the flour now comes from a mill only a few miles
  away.
- On Saturdays the shop sells out of its rye loaves before nine o'clock.
- Small bakeries like this one were once found in every village, and their slow return is
  something to celebrate.
# troubleshooting
- A loaf that spreads flat in the oven is usually a sign of over-proofing or weak shaping.
- A dense, heavy crumb more often points to under-proofing, or to dough that was too dry.
- Large, irregular holes just under the crust suggest that the dough was not degassed
  properly before shaping.
- If the bottom burns while the top stays pale, try moving the tray one shelf higher.
- Keep notes of temperatures and timings, because small changes are hard to remember a week
  later.
- Every failed loaf teaches something, and most of them are still perfectly good toasted.
"""

_BICYCLE = """
# punctures
- Sooner or later every cyclist gets a puncture, usually on the wettest day of the year.
- Start by removing the wheel and letting out any remaining air from the inner tube.
- Slide two tyre levers under the bead of the tyre and work them around the rim until one
  side comes free.
- Before fitting a new tube, run your fingers carefully around the inside of the tyre to find
  the thorn or glass.
- If you skip this step, the new tube will often go flat again within a mile.
- Inflate the tube slightly before refitting it, which makes it much less likely to be pinched
  by the levers.
# chains
- A dirty chain wastes effort, wears out expensive parts and leaves black marks on your
  trousers.
- Wipe it with a rag after wet rides, and give it a proper clean with degreaser every few
  weeks.
- Apply a drop of lubricant to each roller, then wipe off the excess so that it does not
  collect grit.
- Chains stretch as they wear, and a stretched chain quickly ruins the cogs it runs over.
- A cheap checking gauge will tell you when it is time for a replacement; anything worn beyond
  0.75% should be changed.
- Replacing a chain costs far less than replacing a whole set of sprockets and chainrings.
# brakes
- Brakes deserve more attention than any other part of the bicycle.
- Squeeze each lever hard while standing beside the bike; it should stop well before touching
  the handlebar.
- Rim brake pads wear into grooves, and once the grooves disappear the pads must be replaced.
- Disc brakes are less affected by rain, but contaminated pads will squeal and lose much of
  their power.
- Never spray lubricant anywhere near the rotors, and clean them with alcohol rather than
  ordinary degreaser.
- If you are ever unsure about a brake adjustment, ask someone experienced to check it before
  you ride.
# the safety check
- A quick check before each ride takes no more than ten minutes and prevents most breakdowns.
- Lift the front of the bike and spin the wheel to see whether it wobbles or rubs against the
  brake.
- Press the tyres firmly with your thumb, and pump them up if they feel soft.
- Hold the front brake and rock the bike forwards to feel for any looseness in the headset.
- Check that the quick-release levers are closed firmly and point backwards, where branches
  cannot catch them.
- Finally, ring the bell and test the lights, even if you only plan to ride in daylight.
# gears
- Gears that skip or hesitate are usually caused by a cable that has stretched slightly.
- Most derailleurs have a small barrel adjuster where the cable enters, which can be turned
  by hand.
- Shift to the smallest rear cog, then turn the adjuster half a turn at a time while changing
  up and down.
- If the chain hesitates before climbing to a larger cog, the cable needs a little more
  tension.
- If it is reluctant to drop back down, turn the adjuster the other way.
- Patience is essential, because tiny adjustments make a surprisingly large difference.
# the community workshop
- Every Thursday evening, a disused shop unit in {town} becomes a community bike workshop.
- Volunteers lend out tools and advice, but the visitors are expected to do the work
  themselves.
- {name} started the project in a garden shed with a single workstand and a box of donated
  spares.
- Now it refurbishes hundreds of abandoned bicycles each year and passes them on to people
  who need them.
- Many of the regulars arrived knowing nothing about bicycles and now teach the newcomers.
- There is no charge, although a tin by the door collects donations for new tyres and brake
  cables.
# tyres and tools
- Tyre pressure has a larger effect on comfort and speed than most riders realise.
- Pressures that are too high make the bike skip over rough surfaces and can actually slow
  you down.
- Pressures that are too low risk pinch punctures and make the steering feel vague.
- The sidewall of each tyre prints a safe range, and the right value within it depends on
  your weight.
- A small kit with a spare tube, levers, a pump and a multi-tool will get you home from most
  problems.
- It weighs less than a bottle of water and has rescued more rides than anyone can count.
"""

_ASTRONOMY = """
# the first night
- You do not need any equipment to begin exploring the night sky.
- Choose a clear evening, find a spot away from streetlights and give your eyes at least
  twenty minutes to adapt.
- During that time your pupils widen and the chemistry of your retina slowly becomes more
  sensitive.
- A single glance at a phone screen will undo much of this adaptation, so keep it in your
  pocket.
- As your eyes adjust, faint stars appear that were invisible when you first stepped outside.
- Dress more warmly than seems necessary, because standing still on a clear night is
  surprisingly cold.
# the pole star
- The easiest pattern to find from northern latitudes is the Plough, a group of seven bright
  stars shaped like a saucepan.
- Follow the two stars at the end of the pan upwards, and they point almost directly at
  Polaris, the Pole Star.
- Polaris is not especially bright, but it barely moves while the rest of the sky turns
  around it.
- Once you have found it, you always know which way is north.
- From the Plough you can hop to other constellations by following imaginary lines between
  bright stars.
- Learning two or three new patterns each month is a comfortable pace that keeps the sky
  familiar.
# binoculars
- Many beginners buy a small telescope first and are disappointed by a wobbly mount and a
  tiny field of view.
- A pair of ordinary binoculars is often a much better investment.
- They gather far more light than the eye, show the sky the right way up and are easy to
  point.
- Through them the Milky Way breaks up into countless stars, and star clusters appear as
  glittering knots.
- Look for the numbers printed on the body, such as 7x50 or 10x50, which describe the
  magnification and the size of the lenses.
- Resting your elbows on a wall or a car roof will steady the view more than you might expect.
# the moon
- The Moon is the best target for a first look through any instrument.
- Oddly, full Moon is the worst time to observe it, because the sunlight falls straight down
  and hides all relief.
- A few days after new Moon, the line between light and shadow throws long shadows from
  crater walls and mountains.
- Night after night, that line creeps across the surface and reveals a different landscape.
- Sketching what you see, however roughly, forces you to notice details you would otherwise
  miss.
- Some observers have kept drawing the same craters for decades and still find something new.
# meteor showers
- Meteor showers happen when Earth passes through a trail of dust left behind by a comet.
- The grains strike the upper atmosphere at tremendous speed and burn up as brief streaks of
  light.
- The Perseids in August are a favourite, because the nights are mild and the shower is
  reliable.
- Lie back on a reclining chair, look about halfway up the sky and simply wait.
- On a good night, far from town, you might see a meteor every minute or two.
- No telescope is needed, and in fact one would only get in the way.
# planets
- Planets are easy to tell from stars once you know the trick: they usually shine with a
  steady light instead of twinkling.
- Venus is often the brightest point in the evening or morning sky and is frequently mistaken
  for an aircraft.
- Jupiter, even through binoculars, shows up to four of its largest moons lined up beside it.
- Saturn's rings need a small telescope, but the first sight of them is something few people
  forget.
- Because the planets move against the background stars, their positions change from month
  to month.
- A free planetarium program or a printed monthly chart will tell you where to look.
# light pollution and the club
- Light pollution is the biggest obstacle facing astronomers in towns and cities.
- Poorly shielded streetlights send much of their glow upwards, washing out all but the
  brightest stars.
- The astronomy club in {town} holds observing evenings at a dark site a few miles outside
  the town.
- {name}, the club's secretary, brings a flask of tea and a box of star charts to every
  session.
- Keeping a notebook of what you observe, with the date, time and conditions, turns casual
  looking into real observing.
- Years later, those pages become a surprisingly personal record of the sky and of your own
  progress.
"""

_HISTORY = """
# the mill
- For most of the nineteenth century, the corn mill on {river} was the busiest building in
  {town}.
- Farmers brought their grain from miles around, and carts often queued along the lane for
  half a day.
- The great wheel turned a pair of millstones that had been cut from rock quarried in the
  hills.
- The miller was paid in a share of the flour, a system that led to endless arguments about
  fair measures.
- By {year} steam-powered roller mills in the cities had made the old water mill unprofitable.
- The wheel still survives, although it has not turned for more than a hundred years.
# the railway
- The arrival of the railway in {year} changed the town more quickly than anything before it.
- Fresh milk could now reach the city markets by breakfast, and many farms switched from
  cheese to dairy.
- Day trippers arrived on summer weekends, and two new inns opened within sight of the
  station.
- Not everyone welcomed the change, and the parish council recorded several complaints about
  noise and smoke.
- The line closed in the 1960s, and its embankment is now a footpath popular with walkers and
  cyclists.
- Old photographs of the station platform remain among the most requested items in the local
  archive.
# parish records
- Parish registers are one of the richest sources for anyone researching the history of a
  village.
- They record baptisms, marriages and burials, sometimes going back more than four hundred
  years.
- The handwriting can be difficult at first, and the spelling of surnames changes from one
  entry to the next.
- A careful reader begins to notice patterns, such as a cluster of burials during a hard
  winter or an epidemic.
- {name} spent three winters transcribing the registers of {town} and found dozens of
  forgotten family connections.
- The transcriptions are now kept in the library, where anyone can consult them free of
  charge.
# the great flood
- The great flood of {year} is still remembered in stories passed down through families in
  {town}.
- After days of rain, {river} burst its banks during the night and filled the lower streets
  with water.
- Families carried furniture upstairs and watched as the current swept fences and hay ricks
  downstream.
- Remarkably, no one was killed, although several cottages near the bridge had to be rebuilt.
- A small stone plaque on the church wall still marks the height that the water reached.
- The disaster led directly to the building of the first proper flood banks, some of which
  survive today.
# the high street
- A walk along the old high street reveals layers of history that are easy to overlook.
- Look above the modern shop fronts and you will see older windows, painted signs and carved
  dates.
- The building that now houses a café was once a blacksmith's forge, and its wide arched door
  is still visible.
- Further along, a narrow passage once led to a yard where horses were stabled for
  travellers.
- Trade directories from the nineteenth century list a saddler, two bakers, a draper and no
  fewer than five public houses.
- Comparing those lists with the street today is a surprisingly effective way to bring the
  past to life.
# the village school
- The village school opened in {year} with a single classroom and one teacher for more than
  sixty pupils.
- Children sat in rows on long benches and practised their letters on slates rather than
  paper.
- Attendance dropped sharply at harvest time, when many were needed to help in the fields.
- The school logbook records the weather, outbreaks of illness and the occasional visit from
  an inspector.
- One entry notes simply that "the stove smoked so badly that lessons were held outside."
- Former pupils who attended in the 1940s still meet every year to share their memories.
# field names and the memorial
- Old field names preserve information that has disappeared from every other record.
- A meadow called Tenter Field was once used to stretch woven cloth, while Kiln Close hints
  at lime burning.
- Names like Starveacre are a blunt warning from earlier farmers about the quality of the
  soil.
- Tithe maps from the 1840s list thousands of these names, along with the owner and tenant of
  each plot.
- The memorial on the green lists the men from {town} who did not return from the two world
  wars.
- Volunteers have researched each of them, so that they are remembered as people rather than
  simply as names.
"""

_GARDEN = """
# starting a vegetable patch
- The best place for a vegetable patch is the sunniest spot you have, ideally sheltered from
  strong winds.
- Start small, because a well-tended bed of a few square metres produces more than a large
  neglected one.
- Remove perennial weeds such as dandelion and couch grass by the roots before you plant
  anything.
- Spreading a thick layer of compost over the surface is often better than digging it deeply
  into the soil.
- Worms will gradually pull the organic matter down, improving the structure of the soil as
  they go.
- In the first year, grow crops that are easy and rewarding, such as salad leaves, beans and
  courgettes.
# compost
- A good compost heap needs a mixture of green material and brown material in roughly equal
  amounts.
- Grass clippings and kitchen scraps supply nitrogen, while cardboard, straw and dry leaves
  supply carbon.
- Too much green material turns the heap slimy and smelly, and too much brown slows
  everything down.
- Turning the heap every few weeks lets air in and speeds up decomposition considerably.
- Avoid adding cooked food or meat, which attracts rats, and perennial weed roots, which may
  survive.
- After six months to a year, the bottom of the heap should be dark, crumbly and smell like a
  forest floor.
# tomatoes
- Tomatoes can be grown successfully in pots on a sunny balcony or against a south-facing wall.
- Sow the seeds indoors in early spring and move the young plants outside only when the
  frosts are over.
- Tall varieties need a stout cane and regular tying in, while bush types can be left to
  sprawl.
- Pinch out the side shoots that appear where leaves join the main stem, so the plant puts its
  energy into fruit.
- Water consistently, because irregular watering causes the fruit to split or develop dark
  patches.
- Nothing bought in a shop compares with a tomato eaten warm from the plant on a summer
  afternoon.
# pollinators
- A garden can become a valuable refuge for bees, butterflies and other insects with very
  little effort.
- Choose plants that flower at different times, so that there is always something to feed on
  from spring to autumn.
- Single, open flowers are usually better than heavily bred double varieties, which often hide
  their pollen.
- Leaving a corner of long grass and a pile of old logs provides shelter for insects through
  the winter.
- {name}, who opens a garden in {town} to visitors each summer, has recorded more than forty
  kinds of bee there.
- Avoiding pesticides is the single most important step, even for problems that seem serious
  at the time.
# saving seeds
- Saving seeds from your own plants is one of the oldest gardening traditions.
- Beans and peas are the easiest place to start, because their flowers usually pollinate
  themselves.
- Leave a few pods on the plant until they turn dry and papery, then shell the seeds and dry
  them further indoors.
- Store them in labelled paper envelopes in a cool, dry place, and they will keep for several
  years.
- Over time, plants grown from saved seed adapt to the conditions of your own garden.
- Many towns now hold seed swaps each spring, where gardeners exchange varieties that are hard
  to buy.
# winter jobs
- Winter is a quieter season in the garden, but there is still plenty of useful work to do.
- Clean and sharpen tools, and oil the wooden handles before putting them away.
- Fruit trees such as apples and pears are best pruned while they are dormant.
- Remove dead and crossing branches first, then aim for an open shape that lets light reach
  the centre.
- On mild days, it is a good time to plan next year's beds and order seeds from catalogues.
- Resist the urge to walk on waterlogged soil, because compaction can damage its structure for
  months.
# slugs and allotments
- Slugs are the most common complaint among gardeners, especially after a wet spring.
- Hunting them by torchlight on a damp evening is unpleasant, but it is remarkably effective.
- Encouraging frogs, toads and ground beetles provides a natural form of control that works
  all year.
- Copper tape, gravel barriers and wool pellets all have their supporters, although results
  vary.
- The allotment site in {town} has a waiting list of more than {count} years, which says a lot
  about the demand for growing space.
- Plot holders share seedlings, advice and surplus produce, and the site has become a
  community in its own right.
"""

EN_TOPICS: tuple[TopicText, ...] = (
    TopicText(
        "river-ecology", "River Ecology", "en",
        "Guides and stories about the rivers and streams of the valley and the life they hold.",
        ("Reading the Riffles: Life in Fast Water", "What Lives Under a River Stone",
         "Floods, Gravel and the Shape of a River", "Why Bankside Trees Matter",
         "Counting Mayflies on a Summer Evening", "The Quiet Return of the Otter",
         "Cold Water, Clean Water", "A Year on the Riverbank"),
        parse_clusters(_RIVER)),
    TopicText(
        "bread-baking", "Bread Baking", "en",
        "Recipes, techniques and stories from the ovens of the valley.",
        ("Your First Loaf of Sourdough", "Why Dough Needs Time",
         "Flour, Water, Salt and Patience", "Keeping a Starter Alive", "Baking in a Home Oven",
         "The Village Bakery on Mill Street", "Troubleshooting a Flat Loaf",
         "Notes from a Weekend Baker"),
        parse_clusters(_BREAD)),
    TopicText(
        "bicycle-repair", "Bicycle Repair", "en",
        "Practical advice for keeping an ordinary bicycle safe and running smoothly.",
        ("Fixing a Puncture at the Roadside", "A Clean Chain Is a Happy Chain",
         "Adjusting Brakes Without Tears", "The Ten-Minute Safety Check",
         "Tuning Gears That Will Not Behave", "Inside the Community Bike Workshop",
         "Choosing the Right Tyre Pressure", "Tools Worth Carrying on Every Ride"),
        parse_clusters(_BICYCLE)),
    TopicText(
        "astronomy", "Astronomy for Beginners", "en",
        "A gentle introduction to the night sky for anyone with a pair of eyes and some patience.",
        ("Your First Night Under the Stars", "Finding the Pole Star",
         "Why Binoculars Beat a Cheap Telescope", "Watching the Moon Change",
         "A Beginner's Guide to Meteor Showers", "The Planets You Can See Tonight",
         "Escaping Light Pollution", "Keeping an Observing Notebook"),
        parse_clusters(_ASTRONOMY)),
    TopicText(
        "local-history", "Local History", "en",
        "Mills, railways, floods and schools: the past of the valley, told by its residents.",
        ("The Mill at the Edge of Town", "When the Railway Came", "Reading Old Parish Records",
         "The Great Flood and What Followed", "A Walk Down the Old High Street",
         "Schooldays a Century Ago", "Stories Hidden in Field Names",
         "The Names on the War Memorial"),
        parse_clusters(_HISTORY)),
    TopicText(
        "gardening", "Gardening", "en",
        "Vegetables, compost, flowers and the occasional slug, season by season.",
        ("Starting a Vegetable Patch from Scratch", "Making Compost That Actually Works",
         "Growing Tomatoes in a Small Space", "A Garden for Bees and Butterflies",
         "Saving Your Own Seeds", "Winter Jobs in the Garden",
         "Dealing with Slugs Without Poison", "The Allotment Waiting List"),
        parse_clusters(_GARDEN)),
)

# --- French, German and Spanish --------------------------------------------------------------

_FRENCH = """
# le levain
- Le levain n’est rien d’autre qu’un mélange de farine et d’eau où vivent des levures
  sauvages.
- Pour le démarrer, il suffit de mélanger les deux dans un bocal et de le nourrir chaque jour
  pendant une semaine.
- Au bout de quelques jours, de petites bulles apparaissent et une odeur légèrement acide se
  dégage.
- Un levain bien entretenu peut vivre des années, et certains boulangers conservent le même
  depuis des décennies.
- Il faut simplement penser à le rafraîchir régulièrement, surtout quand il fait chaud.
# pétrissage et fermentation
- Le pétrissage développe le réseau de gluten qui donne au pain sa structure.
- Au début, la pâte colle aux doigts, et il est tentant d’ajouter trop de farine.
- Mieux vaut être patient, car une pâte plus humide donne une mie plus légère et plus
  alvéolée.
- Pendant la fermentation, la pâte gonfle lentement et développe ses arômes.
- Dans une cuisine fraîche, il faut parfois compter cinq ou six heures avant que le volume ait
  doublé.
# la boulangerie du village
- À {town}, la boulangerie ouvre ses portes à six heures du matin, même le dimanche.
- {name} y travaille depuis plus de vingt ans et façonne encore chaque baguette à la main.
- Le four est allumé bien avant l’aube, quand le village dort encore.
- Les habitants font la queue devant la vitrine, et l’odeur du pain chaud se répand dans toute
  la rue.
- Une baguette coûte environ 1,20 €, un prix qui n’a presque pas changé depuis des années.
# la croûte
- Une belle croûte dépend surtout de la chaleur du four et de la vapeur au début de la
  cuisson.
- À la maison, on peut cuire le pain dans une cocotte en fonte fermée pour retenir
  l’humidité.
- Après vingt minutes, on retire le couvercle pour que la croûte dore et devienne
  croustillante.
- Le pain est cuit lorsqu’il sonne creux quand on tapote le dessous.
- Il faut ensuite le laisser refroidir sur une grille, même si l’attente paraît bien longue.
# le marché
- Le samedi matin, la place du marché de {town} se remplit de producteurs venus des villages
  voisins.
- On y trouve des fromages de chèvre, des légumes de saison et du miel récolté dans les
  collines.
- Les conversations vont bon train, et chacun prend le temps de goûter avant d’acheter.
- Pour beaucoup d’habitants, c’est le véritable cœur de la semaine.
- Vers midi, les étals se vident et les cafés autour de la place se remplissent à leur tour.
# les farines anciennes
- Depuis quelques années, les farines anciennes reviennent à la mode chez les boulangers
  artisans.
- Le petit épeautre, le seigle et certaines variétés de blé oubliées donnent des pains au goût
  plus prononcé.
- Ces céréales sont souvent cultivées sans engrais chimiques, sur des parcelles modestes.
- Leur gluten est plus fragile, ce qui demande un peu plus d’attention lors du façonnage.
- Le résultat en vaut la peine, car la mie garde sa fraîcheur plusieurs jours.
"""

_GERMAN = """
# am Fluss
- Der Weg am Fluss beginnt direkt hinter der alten Steinbrücke von {town}.
- Im Frühling blühen an den Ufern Buschwindröschen, und in den Weiden singen die ersten Vögel.
- Wer früh am Morgen unterwegs ist, sieht mit etwas Glück einen Eisvogel über das Wasser
  schießen.
- Nach etwa zwei Stunden erreicht man eine kleine Gaststätte, in der es hausgemachten Kuchen
  gibt.
- Für den Rückweg kann man den Bus nehmen, der stündlich an der Dorfkirche hält.
# der Auwald
- Im Herbst verwandelt sich der Auwald in ein Meer aus gelben und roten Blättern.
- Die Erlen und Weiden stehen oft wochenlang im Wasser, ohne Schaden zu nehmen.
- Solche Wälder gehören zu den artenreichsten Lebensräumen Mitteleuropas.
- Leider wurden viele von ihnen im letzten Jahrhundert gerodet oder trockengelegt.
- Heute bemühen sich Naturschutzgruppen darum, die verbliebenen Flächen zu erhalten.
# Fahrrad reparieren
- Einen platten Reifen zu flicken, ist einfacher, als viele Radfahrer glauben.
- Zuerst nimmt man das Laufrad aus dem Rahmen und lässt die restliche Luft aus dem Schlauch.
- Mit zwei Reifenhebern hebelt man den Mantel vorsichtig über die Felge.
- Bevor der neue Schlauch eingesetzt wird, sollte man die Innenseite des Mantels nach
  Glassplittern absuchen.
- Ein kleines Flickzeug wiegt fast nichts und gehört bei jeder Tour in die Satteltasche.
# die alte Mühle
- Die alte Mühle am Bach wurde im Jahr {old_year} zum ersten Mal urkundlich erwähnt.
- Jahrhundertelang mahlten hier die Bauern aus der Umgebung ihr Getreide.
- Das große Wasserrad steht seit Jahrzehnten still, ist aber liebevoll restauriert worden.
- {name} vom Heimatverein führt an jedem ersten Sonntag im Monat durch das Gebäude.
- Besonders Kinder staunen darüber, wie viel Kraft in einem einfachen Bach steckt.
# mit dem Rad durch das Tal
- Der Radweg durch das Tal ist fast durchgehend asphaltiert und kaum befahren.
- Er folgt über weite Strecken einer ehemaligen Bahntrasse, deshalb gibt es kaum Steigungen.
- Unterwegs laden Bänke und kleine Rastplätze zu einer Pause mit Blick auf den Fluss ein.
- In {town} lohnt sich ein Abstecher zum Marktplatz mit seinen alten Fachwerkhäusern.
- Wer die ganze Strecke fährt, sollte genug Wasser und einen Ersatzschlauch mitnehmen.
# Raum für Flüsse
- Begradigte Flüsse fließen schneller und tragen Hochwasser mit voller Wucht in die Städte.
- Deshalb werden heute an vielen Orten Deiche zurückverlegt und alte Flussarme wieder
  angeschlossen.
- Die Wiesen werden dadurch häufiger überschwemmt, doch Tiere und Pflanzen kehren zurück.
- Fachleute sprechen von „natürlichem Hochwasserschutz“, der oft günstiger ist als neue
  Mauern.
- Für die Menschen im Tal bedeutet das mehr Sicherheit und eine lebendigere Landschaft.
"""

_SPANISH = """
# empezar un huerto
- Para empezar un huerto, lo más importante es elegir un lugar que reciba al menos seis horas
  de sol.
- No hace falta mucho espacio, porque un bancal pequeño bien cuidado produce más que uno
  grande abandonado.
- Antes de plantar, conviene quitar las malas hierbas con sus raíces y añadir una buena capa
  de compost.
- Las lechugas, los rábanos y las judías son cultivos sencillos y agradecidos para el primer
  año.
- ¿Y si algo sale mal? No pasa nada, porque cada temporada enseña algo nuevo.
# el compost
- Un buen compost necesita una mezcla equilibrada de restos verdes y materiales secos.
- Las cáscaras de fruta y los restos de verdura aportan nitrógeno, mientras que las hojas
  secas y el cartón aportan carbono.
- Es recomendable remover el montón cada pocas semanas para que entre el aire.
- Al cabo de unos meses, la parte inferior se vuelve oscura, suelta y huele a tierra de
  bosque.
- Es una forma sencilla de reducir la basura de casa y alimentar el suelo al mismo tiempo.
# tomates
- Los tomates crecen sin problema en macetas grandes, siempre que tengan sol y agua constante.
- Las semillas se siembran a finales del invierno en un lugar cálido y luminoso.
- Cuando pasan las heladas, las plantas pequeñas se trasladan al balcón o al huerto.
- Las variedades altas necesitan un tutor firme, y hay que atarlas con cuidado a medida que
  crecen.
- ¡No hay nada como un tomate recién cogido de la mata en una tarde de verano!
# las abejas
- Un jardín puede convertirse en un refugio valioso para las abejas y las mariposas.
- Conviene elegir plantas que florezcan en distintas épocas, desde la primavera hasta el
  otoño.
- El romero, la lavanda y el tomillo son especialmente apreciados por los insectos
  polinizadores.
- En {town}, {name} ha contado más de treinta especies de abejas en su pequeño jardín.
- Evitar los pesticidas es, sin duda, el paso más importante.
# las semillas
- Guardar semillas de las propias plantas es una de las tradiciones más antiguas del campo.
- Las judías y los guisantes son los más fáciles, porque sus flores suelen polinizarse solas.
- Se dejan algunas vainas en la planta hasta que se secan, y después se guardan las semillas
  en sobres de papel.
- Con los años, estas variedades se adaptan al clima y al suelo de cada huerto.
- Mi abuela guardaba las suyas en una lata de galletas, con el nombre escrito a mano en cada
  sobre.
# el mercado
- Los jueves por la mañana, la plaza de {town} se llena de puestos de fruta, verdura y flores.
- Los agricultores de los pueblos cercanos traen lo que han recogido el día anterior.
- Los vecinos charlan, comparan precios y se llevan lo mejor de la temporada.
- En otoño abundan las calabazas, las granadas y los membrillos.
- Para muchos, el mercado es mucho más que un lugar de compras: es el punto de encuentro del
  barrio.
"""

FOREIGN_TOPICS: tuple[TopicText, ...] = (
    TopicText(
        "pain-et-marche", "Le pain et le marché", "fr", "",
        ("Le pain au levain, pas à pas", "La boulangerie du village",
         "Les secrets d’une bonne croûte", "Pourquoi la pâte a besoin de temps",
         "Le marché du samedi matin", "Farines anciennes et nouvelles"),
        parse_clusters(_FRENCH)),
    TopicText(
        "fluss-und-rad", "Fluss und Fahrrad", "de", "",
        ("Unterwegs am Fluss", "Das Fahrrad selbst reparieren", "Herbst im Auwald",
         "Die alte Mühle am Bach", "Mit dem Rad durch das Tal", "Warum Flüsse Raum brauchen"),
        parse_clusters(_GERMAN)),
    TopicText(
        "huerto-y-jardin", "Huerto y jardín", "es", "",
        ("Cómo empezar un huerto en casa", "El compost, paso a paso", "Tomates en el balcón",
         "Un jardín para las abejas", "Las semillas de la abuela", "El mercado de los jueves"),
        parse_clusters(_SPANISH)),
)

# --- near-duplicate edits, thin pages, spam and private pages ---------------------------------

ADDED_LINES: tuple[str, ...] = (
    "Update: this article was corrected after a reader pointed out a mistake in the first "
    "version.",
    "This piece first appeared in the printed spring newsletter and is reproduced here with "
    "minor changes.",
    "Thanks to everyone who sent in photographs and comments after the first edition.",
)

REPLACEMENT_SENTENCES: tuple[str, ...] = (
    "Several readers have written in with their own experiences, and many of them agree.",
    "It is worth repeating this point, because it is the one most people forget.",
    "None of this requires expensive equipment, only a little time and curiosity.",
)

ABOUT_TEXT = ('The Millbrook Almanac is written by volunteers and edited by "the committee", '
              "whoever that happens to be this year.")
COMING_SOON_TEXT = "This article is coming soon."

HOME_INTRO = ("Stories, guides and local news from the Millbrook valley, written and edited "
              "by volunteers.")
INTERNATIONAL_INTRO = ("Articles contributed by our twin towns in France, Germany and Spain, "
                       "published in their original languages.")
ARCHIVE_INTRO = "Earlier editions and printable versions of articles from the almanac."

SPAM_PRODUCTS: tuple[str, ...] = ("cheap watches", "diet pills", "payday loans",
                                  "designer sneakers", "crypto signals", "casino bonus")
SPAM_ADJECTIVES: tuple[str, ...] = ("cheap", "best", "discount", "buy", "free", "top", "sale")

PRIVATE_TEXT = """
# staff notes
- Reminder to all editors: the spring issue goes to the printer on the first Friday of the
  month.
- Please do not publish any reader letters without checking that the writer has agreed.
- The shared camera has been moved to the cupboard in the village hall office.
- Expense claims for mileage should be submitted by the end of each quarter.
# subscribers
- This page lists postal subscribers and is for internal use only.
- Renewal letters are sent in November, and late payers receive a friendly reminder in
  January.
- Do not share addresses with any outside organisation, however worthy the cause.
"""
