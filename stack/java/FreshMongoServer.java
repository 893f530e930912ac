// MongoDB wire-protocol server for the native local stack (in-memory backend, oplog on).
// Run by the Java source launcher: java -cp 'jars/*' FreshMongoServer.java HOST PORT
//
// mongo-java-server answers like a standalone server with collection-level change streams only.
// Debezium's MongoDB connector needs what a replica set offers: `hello`, `operationTime` / `$clusterTime` on
// replies, change streams on a database or the whole deployment (`aggregate: 1`), `ns` / `wallTime`
// on events, resume tokens whose `_data` starts with the KeyString timestamp (0x82 + 8 bytes) and a
// `postBatchResumeToken` on every batch. FreshBackend adds exactly that on top of the memory backend;
// FreshOplog keeps the change events in memory, capped like a real oplog: past
// -Dprobablyfresh.mongo.oplogMaxEntries (default 200000) the oldest entries go, and with
// -Dprobablyfresh.mongo.oplogMaxAgeSeconds (default 0: off) those older than that too. A change stream
// resumed (or a cursor left) behind the cap fails with ChangeStreamHistoryLost (code 286), as on mongod.
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoCollection;
import de.bwaldvogel.mongo.MongoDatabase;
import de.bwaldvogel.mongo.backend.AbstractCursor;
import de.bwaldvogel.mongo.backend.Cursor;
import de.bwaldvogel.mongo.backend.aggregation.Aggregation;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;
import de.bwaldvogel.mongo.bson.BinData;
import de.bwaldvogel.mongo.bson.BsonTimestamp;
import de.bwaldvogel.mongo.bson.Document;
import de.bwaldvogel.mongo.exception.MongoServerError;
import de.bwaldvogel.mongo.oplog.Oplog;
import io.netty.channel.Channel;

import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;
import java.util.stream.Stream;

public class FreshMongoServer {
    public static void main(String[] args) throws Exception {
        String host = args[0];
        int port = Integer.parseInt(args[1]);
        FreshBackend backend = new FreshBackend(host + ":" + port);
        backend.enableOplog();
        MongoServer server = new MongoServer(backend);
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow));
        server.bind(host, port);
        System.out.println("FreshMongoServer ready on " + server.getLocalAddress()
            + (FreshBackend.SET_NAME.isEmpty() ? "" : " (replica set " + FreshBackend.SET_NAME + ")"));
        Thread.currentThread().join();
    }
}

/** The memory backend with what Debezium needs: hello, operationTime, database/cluster change streams. */
class FreshBackend extends MemoryBackend {
    // Empty (default): a standalone that drivers reach with directConnection=true, as before. Set
    // -Dprobablyfresh.mongo.replicaSet=rs0 to answer as the primary of replica set rs0 instead
    // (clients then need replicaSet=rs0 in their URI; Debezium works either way).
    static final String SET_NAME = System.getProperty("probablyfresh.mongo.replicaSet", "");

    private final String me;
    private final FreshOplog freshOplog = new FreshOplog(this);

    FreshBackend(String me) {
        this.me = me;
    }

    @Override
    protected Oplog createOplog() {
        return freshOplog;
    }

    @Override
    public Document handleCommand(Channel channel, String databaseName, String command, Document query) {
        Document response;
        if (command.equalsIgnoreCase("hello") || command.equalsIgnoreCase("ismaster")) {
            response = hello(channel, databaseName, query, command.equals("hello"));
        } else if (command.equalsIgnoreCase("aggregate") && changeStreamStage(query) != null) {
            response = openChangeStream(databaseName, query);
        } else if (command.equalsIgnoreCase("getMore")) {
            response = getMore(channel, databaseName, command, query);
        } else if (command.equalsIgnoreCase("replSetGetStatus")) {
            response = replSetGetStatus();
        } else if (command.equalsIgnoreCase("listDatabases")) {
            response = withLocalDatabase(super.handleCommand(channel, databaseName, command, query));
        } else {
            response = super.handleCommand(channel, databaseName, command, query);
        }
        return withClusterTime(response);
    }

    private Document hello(Channel channel, String databaseName, Document query, boolean helloCommand) {
        Document response = super.handleCommand(channel, databaseName, "ismaster", query);
        if (helloCommand) {
            response.remove("ismaster");
        }
        BsonTimestamp now = freshOplog.now();
        response.put("isWritablePrimary", Boolean.TRUE);
        response.put("helloOk", Boolean.TRUE);
        if (!SET_NAME.isEmpty()) {
            response.put("setName", SET_NAME);
            response.put("setVersion", 1);
            response.put("hosts", List.of(me));
            response.put("primary", me);
            response.put("me", me);
        }
        response.put("logicalSessionTimeoutMinutes", 30);
        response.put("lastWrite", new Document("opTime", new Document("ts", now).append("t", 1L))
            .append("lastWriteDate", Instant.ofEpochSecond(now.getTime())));
        return response;
    }

    private Document replSetGetStatus() {
        Document member = new Document("_id", 0).append("name", me).append("health", 1.0)
            .append("state", 1).append("stateStr", "PRIMARY").append("self", Boolean.TRUE);
        return new Document("set", SET_NAME).append("myState", 1).append("members", List.of(member))
            .append("ok", 1.0);
    }

    /**
     * Like mongod, always list `local` (where a real server keeps its oplog and startup log). Debezium's
     * config validation reads an empty database list as "User doesn't have rights to list databases".
     */
    @SuppressWarnings("unchecked")
    private Document withLocalDatabase(Document response) {
        Object listed = response.get("databases");
        if (listed instanceof List) {
            List<Object> databases = (List<Object>) listed;
            boolean hasLocal = databases.stream()
                .anyMatch(d -> d instanceof Document && "local".equals(((Document) d).get("name")));
            if (!hasLocal) {
                Document local = new Document("name", "local");
                local.put("sizeOnDisk", 0L);
                local.put("empty", false);
                databases.add(local);
            }
        }
        return response;
    }

    private Document withClusterTime(Document response) {
        if (response == null) {
            return null;
        }
        BsonTimestamp now = freshOplog.now();
        response.put("operationTime", now);
        response.put("$clusterTime", new Document("clusterTime", now)
            .append("signature", new Document("hash", new BinData(new byte[20])).append("keyId", 0L)));
        return response;
    }

    private static Document changeStreamStage(Document query) {
        Object pipeline = query.get("pipeline");
        if (pipeline instanceof List<?> stages && !stages.isEmpty() && stages.get(0) instanceof Document first) {
            Object stage = first.get("$changeStream");
            return stage instanceof Document document ? document : null;
        }
        return null;
    }

    /** aggregate with $changeStream on a collection, a database (aggregate: 1) or the deployment (admin). */
    private Document openChangeStream(String databaseName, Document query) {
        Document changeStream = changeStreamStage(query);
        Object target = query.get("aggregate");
        List<Document> stages = new ArrayList<>();
        for (Object stage : (List<?>) query.get("pipeline")) {
            stages.add((Document) stage);
        }
        List<Document> rest = stages.subList(1, stages.size());
        final String db;
        final String coll;
        final String ns;
        if (target instanceof String collectionName) {
            db = databaseName;
            coll = collectionName;
            ns = databaseName + "." + collectionName;
        } else if (databaseName.equals("admin") && Boolean.TRUE.equals(changeStream.get("allChangesForCluster"))) {
            db = null;
            coll = null;
            ns = "admin.$cmd.aggregate";
        } else {
            db = databaseName;
            coll = null;
            ns = databaseName + ".$cmd.aggregate";
        }
        MongoDatabase database = resolveDatabase(databaseName);
        Aggregation aggregation = Aggregation.fromPipeline(rest, this::resolveDatabase, database, null, freshOplog);
        ChangeStreamCursor cursor = freshOplog.openCursor(getCursorRegistry().generateCursorId(), changeStream,
            db, coll, aggregation);
        Document cursorQuery = (Document) query.getOrDefault("cursor", new Document());
        int batchSize = ((Number) cursorQuery.getOrDefault("batchSize", 0)).intValue();
        List<Document> firstBatch = cursor.takeDocuments(batchSize);
        getCursorRegistry().add(cursor);
        Document cursorDocument = new Document("id", cursor.getId()).append("ns", ns)
            .append("firstBatch", firstBatch).append("postBatchResumeToken", cursor.postBatchResumeToken());
        return new Document("cursor", cursorDocument).append("ok", 1.0);
    }

    private Document getMore(Channel channel, String databaseName, String command, Document query) {
        long cursorId = ((Number) query.get(command)).longValue();
        Cursor cursor = getCursorRegistry().getCursor(cursorId);
        Document response = super.handleCommand(channel, databaseName, command, query);
        if (cursor instanceof ChangeStreamCursor changeStreamCursor) {
            Document cursorDocument = (Document) response.get("cursor");
            cursorDocument.put("postBatchResumeToken", changeStreamCursor.postBatchResumeToken());
        }
        return response;
    }

    Document lookUp(String db, String coll, Object id) {
        MongoCollection<?> collection = resolveDatabase(db).resolveCollection(coll, false);
        if (collection == null) {
            return null;
        }
        // By the _id index: a scan of the collection per update event slowed the stream as it grew.
        for (Document document : collection.handleQuery(new Document("_id", id), 0, 1)) {
            return document;
        }
        return null;
    }
}

/** One oplog entry: enough to build the change event. */
record OplogEntry(BsonTimestamp ts, Instant wall, String op, String db, String coll, Object id, Document doc) {
}

/** Change events in memory, in timestamp order; timestamps (seconds, global counter) never go back. */
class FreshOplog implements Oplog {
    static final int MAX_ENTRIES = Integer.getInteger("probablyfresh.mongo.oplogMaxEntries", 200_000);
    static final long MAX_AGE_SECONDS = Long.getLong("probablyfresh.mongo.oplogMaxAgeSeconds", 0L);
    static final int HISTORY_LOST = 286;  // mongod's ChangeStreamHistoryLost

    private final FreshBackend backend;
    private final List<OplogEntry> entries = new ArrayList<>();
    private final AtomicInteger increment = new AtomicInteger();
    private long last;
    private long trimmedThrough;  // timestamp of the newest entry dropped by the cap (0: none dropped)

    FreshOplog(FreshBackend backend) {
        this.backend = backend;
    }

    synchronized BsonTimestamp now() {
        long candidate = new BsonTimestamp(Instant.now(), increment.get()).getValue();
        last = Math.max(last, candidate);
        return new BsonTimestamp(last);
    }

    private synchronized void add(String op, String namespace, Object id, Document doc) {
        int dot = namespace.indexOf('.');
        String db = namespace.substring(0, dot);
        String coll = namespace.substring(dot + 1);
        if (db.equals("local") || db.equals("admin") || db.equals("config")) {
            return;
        }
        long candidate = new BsonTimestamp(Instant.now(), increment.incrementAndGet()).getValue();
        last = Math.max(last + 1, candidate);
        entries.add(new OplogEntry(new BsonTimestamp(last), Instant.now(), op, db, coll, id, doc));
        trim();
    }

    /** Drops the oldest entries past the cap, in chunks (a sixteenth of the cap) so adds stay O(1). */
    private void trim() {
        int drop = entries.size() > MAX_ENTRIES + Math.max(1, MAX_ENTRIES / 16) ? entries.size() - MAX_ENTRIES : 0;
        if (MAX_AGE_SECONDS > 0 && !entries.isEmpty()
                && entries.get(0).wall().isBefore(Instant.now().minusSeconds(MAX_AGE_SECONDS + 60))) {
            Instant oldest = Instant.now().minusSeconds(MAX_AGE_SECONDS);
            while (drop < entries.size() && entries.get(drop).wall().isBefore(oldest)) {
                drop++;
            }
        }
        if (drop > 0) {
            trimmedThrough = entries.get(drop - 1).ts().getValue();
            entries.subList(0, drop).clear();
        }
    }

    /** Fails like mongod when entries after `position` may have been dropped by the cap. */
    synchronized void checkHistory(long position, boolean inclusive) {
        if (position < trimmedThrough || (inclusive && position == trimmedThrough)) {
            throw new MongoServerError(HISTORY_LOST, "ChangeStreamHistoryLost",
                "Resume of change stream was not possible, as the resume point may no longer be in the oplog "
                + "(this server keeps the newest " + MAX_ENTRIES + " entries: -Dprobablyfresh.mongo.oplogMaxEntries)");
        }
    }

    /** Entries after `position` (at it too if `inclusive`), at most `limit` (0: all), oldest first. */
    synchronized List<OplogEntry> after(long position, boolean inclusive, int limit) {
        checkHistory(position, inclusive);  // a cursor that fell behind the cap fails, it never skips
        int low = 0;
        int high = entries.size();
        while (low < high) {  // first entry past the position: timestamps are strictly increasing
            int mid = (low + high) >>> 1;
            long value = entries.get(mid).ts().getValue();
            if (value < position || (value == position && !inclusive)) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        int end = limit > 0 ? Math.min(entries.size(), low + limit) : entries.size();
        return new ArrayList<>(entries.subList(low, end));
    }

    /** `now` if nothing is past `position` (the stream has seen everything), else `position`. */
    synchronized long caughtUp(long position, boolean inclusive) {
        return after(position, inclusive, 1).isEmpty() ? Math.max(position, now().getValue()) : position;
    }

    @Override
    public void handleInsert(String namespace, List<Document> documents) {
        for (Document document : documents) {
            add("insert", namespace, document.get("_id"), document.cloneDeeply());
        }
    }

    @Override
    public void handleUpdate(String namespace, Document selector, Document query, List<Object> modifiedIds) {
        for (Object id : modifiedIds) {
            add("update", namespace, id, query);
        }
    }

    @Override
    public void handleDelete(String namespace, Document query, List<Object> deletedIds) {
        for (Object id : deletedIds) {
            add("delete", namespace, id, null);
        }
    }

    @Override
    public void handleDropCollection(String namespace) {
        add("drop", namespace, null, null);
    }

    @Override
    public Cursor createCursor(Document changeStreamDocument, String namespace, Aggregation aggregation) {
        int dot = namespace.indexOf('.');
        return openCursor(0L, changeStreamDocument, namespace.substring(0, dot), namespace.substring(dot + 1),
            aggregation);
    }

    ChangeStreamCursor openCursor(long cursorId, Document changeStream, String db, String coll,
                                  Aggregation aggregation) {
        Document resumeAfter = (Document) changeStream.get("resumeAfter");
        Document startAfter = (Document) changeStream.get("startAfter");
        Object startAt = changeStream.get("startAtOperationTime");
        long position;
        boolean inclusive;
        if (startAfter != null || resumeAfter != null) {
            position = ResumeToken.parse(startAfter != null ? startAfter : resumeAfter);
            inclusive = false;
        } else if (startAt instanceof BsonTimestamp timestamp) {
            position = timestamp.getValue();
            inclusive = true;
        } else {
            position = now().getValue();
            inclusive = false;
        }
        checkHistory(position, inclusive);
        boolean lookup = "updateLookup".equals(changeStream.get("fullDocument"))
            || "required".equals(changeStream.get("fullDocument"))
            || "whenAvailable".equals(changeStream.get("fullDocument"));
        Function<OplogEntry, Document> toEvent = entry -> toEvent(entry, lookup);
        return new ChangeStreamCursor(cursorId, this, db, coll, position, inclusive, toEvent, aggregation);
    }

    private Document toEvent(OplogEntry entry, boolean lookup) {
        Document event = new Document("_id", ResumeToken.of(entry.ts().getValue()))
            .append("operationType", entry.op())
            .append("clusterTime", entry.ts())
            .append("wallTime", entry.wall())
            .append("ns", new Document("db", entry.db()).append("coll", entry.coll()));
        switch (entry.op()) {
            case "insert" -> {
                event.append("documentKey", new Document("_id", entry.id()));
                event.append("fullDocument", entry.doc());
            }
            case "update" -> {
                event.append("documentKey", new Document("_id", entry.id()));
                Document update = entry.doc() == null ? new Document() : entry.doc();
                Document set = update.get("$set") instanceof Document d ? d : new Document();
                List<String> removed = new ArrayList<>();
                if (update.get("$unset") instanceof Document unset) {
                    removed.addAll(unset.keySet());
                }
                boolean operators = update.keySet().stream().anyMatch(k -> k.startsWith("$"));
                if (operators) {
                    event.append("updateDescription", new Document("updatedFields", set)
                        .append("removedFields", removed).append("truncatedArrays", List.of()));
                } else {
                    event.put("operationType", "replace");
                }
                if (lookup || !operators) {
                    event.append("fullDocument", backend.lookUp(entry.db(), entry.coll(), entry.id()));
                }
            }
            case "delete" -> event.append("documentKey", new Document("_id", entry.id()));
            default -> {
            }
        }
        return event;
    }
}

/** A tailable change-stream cursor over FreshOplog; never exhausted, like a real one. */
class ChangeStreamCursor extends AbstractCursor {
    private static final int SCAN_LIMIT = 10_000;  // oplog entries looked at per batch
    private final FreshOplog oplog;
    private final String db;
    private final String coll;
    private final Function<OplogEntry, Document> toEvent;
    private final Aggregation aggregation;
    private long position;
    private boolean inclusive;

    ChangeStreamCursor(long id, FreshOplog oplog, String db, String coll, long position, boolean inclusive,
                       Function<OplogEntry, Document> toEvent, Aggregation aggregation) {
        super(id);
        this.oplog = oplog;
        this.db = db;
        this.coll = coll;
        this.position = position;
        this.inclusive = inclusive;
        this.toEvent = toEvent;
        this.aggregation = aggregation;
    }

    @Override
    public boolean isEmpty() {
        return false;
    }

    @Override
    public synchronized List<Document> takeDocuments(int numberToReturn) {
        List<Document> batch = new ArrayList<>();
        for (OplogEntry entry : oplog.after(position, inclusive, SCAN_LIMIT)) {
            if (numberToReturn > 0 && batch.size() >= numberToReturn) {
                break;
            }
            position = entry.ts().getValue();
            inclusive = false;
            if (db != null && !db.equals(entry.db())) {
                continue;
            }
            if (coll != null && !coll.equals(entry.coll())) {
                continue;
            }
            Document event = toEvent.apply(entry);
            aggregation.runStagesAsStream(Stream.of(event)).forEach(batch::add);
        }
        if (batch.isEmpty()) {
            long caughtUp = oplog.caughtUp(position, inclusive);
            if (caughtUp != position) {
                position = caughtUp;
                inclusive = false;
            }
        }
        return batch;
    }

    synchronized Document postBatchResumeToken() {
        return ResumeToken.of(position);
    }
}

/** Resume tokens shaped like MongoDB's: _data is hex KeyString, 0x82 then the 8-byte timestamp. */
final class ResumeToken {
    private ResumeToken() {
    }

    static Document of(long timestamp) {
        return new Document("_data", String.format("82%016X", timestamp));
    }

    static long parse(Document token) {
        String data = String.valueOf(token.get("_data"));
        if (data.length() >= 18 && data.startsWith("82")) {
            return Long.parseUnsignedLong(data.substring(2, 18), 16);
        }
        return Long.parseUnsignedLong(data, 16);
    }
}
