// MongoDB wire-protocol server for the native local stack (in-memory backend, oplog on).
// Run by the Java source launcher: java -cp 'jars/*' FreshMongoServer.java HOST PORT
import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

public class FreshMongoServer {
    public static void main(String[] args) throws Exception {
        MemoryBackend backend = new MemoryBackend();
        backend.enableOplog();
        MongoServer server = new MongoServer(backend);
        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow));
        server.bind(args[0], Integer.parseInt(args[1]));
        System.out.println("FreshMongoServer ready on " + server.getLocalAddress());
        Thread.currentThread().join();
    }
}
